;; Checks that its linear memory is as instantiated, then dirties it. Run
;; repeatedly in one pool slot, each run sees whether the slot's reset (a
;; `memset` of the pages kept resident, or `madvise`) restored the memory.
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "pristine")

  ;; 1 if every 32-bit word in [start, end) is zero.
  (func $zero (param $start i32) (param $end i32) (result i32)
    (block $dirty
      (loop $next
        (br_if 1 (i32.ge_u (local.get $start) (local.get $end)))
        (br_if $dirty (i32.load (local.get $start)))
        (local.set $start (i32.add (local.get $start) (i32.const 4)))
        (br $next)))
    (i32.ge_u (local.get $start) (local.get $end)))

  ;; Returns 1 if memory was pristine (one page, the data segment intact,
  ;; every other word zero, and zeros in the `pages` it then grows by), or
  ;; -1 if it could not grow. Then dirties it: with `stride` 0 every byte
  ;; (data segment included) becomes 0xab; otherwise one word every
  ;; `stride` bytes and the data segment, so that the written pages are
  ;; many separate runs rather than one.
  (func (export "check_then_dirty") (param $pages i32) (param $stride i32) (result i32)
    (local $ok i32)
    (local $end i32)
    (local $at i32)
    (local.set $ok
      (i32.and
        (i32.and
          (i32.eq (memory.size) (i32.const 1))
          ;; "pristine", little-endian
          (i64.eq (i64.load (i32.const 16)) (i64.const 0x656e697473697270)))
        (i32.and
          (call $zero (i32.const 0) (i32.const 16))
          (call $zero (i32.const 24) (i32.const 65536)))))
    (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1))
      (then (return (i32.const -1))))
    (local.set $end (i32.mul (memory.size) (i32.const 65536)))
    (local.set $ok
      (i32.and (local.get $ok) (call $zero (i32.const 65536) (local.get $end))))
    (if (i32.eqz (local.get $stride))
      (then (memory.fill (i32.const 0) (i32.const 0xab) (local.get $end)))
      (else
        (i64.store (i32.const 16) (i64.const -1))
        (loop $next
          (i32.store (local.get $at) (i32.const 0xabababab))
          (local.set $at (i32.add (local.get $at) (local.get $stride)))
          (br_if $next (i32.lt_u (local.get $at) (local.get $end))))))
    (local.get $ok)))
