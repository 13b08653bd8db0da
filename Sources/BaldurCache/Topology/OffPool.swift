import Dispatch

/// Runs blocking topology work (a discovery: connects and round trips) on
/// `queue` while the calling task suspends, so it never holds a thread of
/// the cooperative pool. `handoff`, taken on both sides of the resume, orders
/// what the work built for ThreadSanitizer too (it cannot see a
/// continuation's resume as a synchronisation).
func offPool<R: Sendable, State>(
    on queue: DispatchQueue, handoff: PlainMutex<State>, _ body: @escaping @Sendable () throws(RedisError) -> R
) async throws(RedisError) -> R {
    let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<R, RedisError>, Never>) in
        queue.async {
            let result = Result(catching: body)
            handoff.withLock { _ in }
            continuation.resume(returning: result)
        }
    }
    handoff.withLock { _ in }
    return try result.get()
}
