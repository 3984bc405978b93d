;; Sleeps in a WASI host call, then runs a short loop (whose back edge checks
;; the epoch deadline, so the runtime's clock sees the call after the sleep).
;; `sleep_then_count(ms)` returns the loop's count, 1000.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "sleep_then_count") (param $ms i32) (result i32)
    (local $i i32)
    ;; One relative clock subscription at offset 0 (48 bytes): userdata 0,
    ;; tag 0 (clock), clock id 1 (monotonic) at 16, timeout in ns at 24,
    ;; precision 0 at 32, flags 0 at 40.
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24)
      (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    ;; The event is written at 64, the count of events at 128.
    (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))
    (local.get $i)))
