;; Grows memory one page at a time until memory.grow fails, then traps.
(module
  (memory 1)
  (func (export "run") (result i32)
    (loop $l
      (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
