;; Checks that its linear memory is as instantiated, then dirties all of it.
;; Run twice in one pool slot, the second run sees whether the slot's reset
;; (memset of the kept pages, or madvise) restored the first run's memory.
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "pristine")
  ;; Returns 1 if memory was pristine: one page, the data segment intact,
  ;; zeros around it, and zeros in the `pages` it then grows by. Then fills
  ;; every byte, the data segment included, with 0xab.
  (func (export "check_then_dirty") (param $pages i32) (result i32)
    (local $ok i32)
    (local $end i32)
    (local.set $ok
      (i32.and
        (i32.and
          (i32.eq (memory.size) (i32.const 1))
          ;; "pristine", little-endian
          (i64.eq (i64.load (i32.const 16)) (i64.const 0x656e697473697270)))
        (i32.and
          (i32.eqz (i32.load (i32.const 1024)))
          (i32.eqz (i32.load (i32.const 65532))))))
    (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1))
      (then (return (i32.const -1))))
    (local.set $end (i32.mul (memory.size) (i32.const 65536)))
    (local.set $ok
      (i32.and (local.get $ok)
        (i32.and
          (i32.eqz (i32.load (i32.const 65536)))
          (i32.eqz (i32.load (i32.sub (local.get $end) (i32.const 4)))))))
    (memory.fill (i32.const 0) (i32.const 0xab) (local.get $end))
    (local.get $ok)))
