import Dispatch

/// One in-memory lock waiter: a release signals it, the waiter wakes.
/// A thread waits on a semaphore; a task suspends on a continuation.
final class ReleaseSignal: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private let state = PlainMutex(State())

    private struct State: Sendable {
        var signalled = false
        var continuation: CheckedContinuation<Void, Never>?
    }

    /// Wakes the waiter (once; later calls do nothing).
    func signal() {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.signalled else { return nil }
            state.signalled = true
            defer { state.continuation = nil }
            return state.continuation
        }
        semaphore.signal()
        continuation?.resume()
    }

    /// Blocks until signalled or `timeout` passes; `true` when signalled.
    func wait(timeout: Duration) -> Bool {
        semaphore.wait(timeout: .now() + .nanoseconds(Int(max(timeout, .zero).nanoseconds))) == .success
    }

    /// Suspends until signalled or `timeout` passes (or the task is cancelled).
    func wait(timeout: Duration) async {
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            self?.signal()
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = state.withLock { state -> Bool in
                    if state.signalled { return true }
                    state.continuation = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            signal()
        }
        timer.cancel()
    }
}
