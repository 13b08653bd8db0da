/// What both cache contracts share: a name, and locks. ``CacheProvider``
/// (blocking calls) and ``AsyncCacheProvider`` (`async` calls) refine it; a
/// ``DistributedLock`` has both kinds of calls itself.
public protocol CacheLockProvider: AnyObject, Sendable {
    /// The provider's name: `"redis"` or `"memory"`.
    var providerName: String { get }

    /// A lock on `name`; the storage key (prefix + name) is resolved now and
    /// never shifts (`SET NX PX` to acquire, `EVALSHA` to release).
    func getLock(_ name: String, timeout: Duration, blockingTimeout: Duration?) -> DistributedLock
}

extension CacheLockProvider {
    /// A lock with a 10 s timeout that waits forever by default.
    public func getLock(_ name: String, timeout: Duration = .seconds(10)) -> DistributedLock {
        getLock(name, timeout: timeout, blockingTimeout: nil)
    }
}
