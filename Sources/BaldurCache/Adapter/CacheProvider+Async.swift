import Dispatch
import Tracing
import Synchronization

/// Where blocking calls made from `async` code run: never Swift's cooperative
/// thread pool, so a slow Redis cannot starve the tasks of the rest of the
/// service.
///
/// Calls are spread round-robin over 64 serial queues. Serial queues get a
/// thread of their own whenever they have work (GCD "overcommits" for them),
/// where one concurrent queue would be held to a few threads per core while
/// its calls block; so up to 64 blocking calls run at once, as many as a pool
/// can usefully serve.
enum BlockingIO {
    static let lanes = (0..<64).map { DispatchQueue(label: "BaldurCache.blocking-io.\($0)") }
    private static let next = Atomic<Int>(0)

    /// Runs `operation` on a lane, inside the calling task's synthetic mode
    /// and service context (task-locals do not cross to a dispatch queue by
    /// themselves): a synthetic-scope write still lands on its `xtest:` key,
    /// and the call's spans are children of the caller's.
    static func run<R: Sendable>(_ operation: @escaping @Sendable () throws -> R) async throws -> R {
        let lane = lanes[next.add(1, ordering: .relaxed).oldValue & 63]
        let synthetic = SyntheticMode.isActive
        let context = ServiceContext.current
        return try await withCheckedThrowingContinuation { continuation in
            lane.async {
                let result = Result {
                    try SyntheticMode.$active.withValue(synthetic) {
                        try ServiceContext.withValue(context) { try operation() }
                    }
                }
                continuation.resume(with: result)
            }
        }
    }
}

extension CacheProvider {
    /// Runs synchronous cache calls from `async` code without blocking Swift's
    /// cooperative thread pool: `operation` runs on BaldurCache's own I/O queue,
    /// inside the calling task's ``SyntheticMode`` and service context (so its
    /// spans are children of the caller's).
    ///
    /// ```swift
    /// let user = try await cache.offload { try $0.get("user:42") }
    /// try await cache.offload { try $0.getLock("job").withLock { try runJob() } }
    /// ```
    public func offload<R: Sendable>(_ operation: @escaping @Sendable (Self) throws -> R) async throws -> R {
        try await BlockingIO.run { try operation(self) }
    }
}

extension RedisClient {
    /// Runs synchronous client calls from `async` code on BaldurCache's own I/O
    /// queue, not on Swift's cooperative thread pool.
    ///
    /// ```swift
    /// let pong = try await client.offload { try $0.send("PING") }
    /// ```
    public func offload<R: Sendable>(_ operation: @escaping @Sendable (RedisClient) throws -> R) async throws -> R {
        try await BlockingIO.run { try operation(self) }
    }
}
