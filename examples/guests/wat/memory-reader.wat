;; Reads bytes of its own (fresh) linear memory.
(module
  (memory (export "memory") 1)
  (func (export "load") (param i32) (result i32)
    (i32.load (local.get 0))))
