;; Leaves a secret in linear memory: a data segment plus a runtime store.
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "secret-from-data-segment")
  (func (export "scribble") (result i32)
    (i32.store (i32.const 1024) (i32.const 0x5ec2e7))
    (i32.const 1)))
