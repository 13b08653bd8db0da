#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value guarded by a plain `pthread_mutex_t`: the one lock type of
/// BaldurCache, its tests and its tools.
///
/// Two measured reasons to prefer it to `Synchronization.Mutex` here:
///
/// - **ThreadSanitizer sees it.** TSan intercepts `pthread_mutex_lock` and
///   `unlock`, so what the lock orders is ordered for TSan too. On Linux,
///   `Synchronization.Mutex` synchronises through futex calls inside the
///   uninstrumented standard library: eight threads incrementing a dictionary
///   under a `Mutex` are reported as a "Swift access race" on every run,
///   which would make CI's TSan pass report every lock in the code.
/// - **It stays fast under contention.** `Synchronization.Mutex` locks with a priority-inheriting futex on Linux
/// (`FUTEX_LOCK_PI`); its contended path runs through the kernel's
/// `rt_mutex`. With 16 threads on 2 CPUs sharing one pool, a lock holder is
/// often preempted: `perf` put about a tenth of the process's samples in that
/// path and in `Mutex._lockSlow`, and pooled `set` fell to 0.25-0.35x of a C
/// hiredis loop (0.7-0.9x with this lock). A default pthread mutex waits on a
/// plain futex instead.
package final class PlainMutex<Value: Sendable>: @unchecked Sendable {
    // Why @unchecked Sendable is safe: `value` is only touched between
    // pthread_mutex_lock and pthread_mutex_unlock on `mutex`.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    /// `Value` must take storage: ThreadSanitizer places an empty value's
    /// inout access at the object's header, which other threads read without
    /// the lock, and reports a race (it did, for a `PlainMutex(())`). Keep
    /// something real in the lock instead, even a counter.
    package init(_ value: Value) {
        precondition(MemoryLayout<Value>.size > 0, "PlainMutex needs a value that takes storage")
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let status = pthread_mutex_init(mutex, nil)
        precondition(status == 0, "pthread_mutex_init failed with \(status)")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value while holding the lock.
    package func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
