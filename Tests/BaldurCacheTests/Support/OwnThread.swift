import Foundation

/// Runs `body` (blocking calls) on a thread of its own, never a
/// cooperative-pool thread, and returns its result when it ends.
func onOwnThread<R: Sendable>(_ body: @escaping @Sendable () -> R) async -> R {
    await withCheckedContinuation { done in Thread { done.resume(returning: body()) }.start() }
}
