;; An infinite loop in the start function: it runs during instantiation.
(module
  (func $spin (loop $l (br $l)))
  (start $spin)
  (func (export "never_reached") (result i32) (i32.const 1)))
