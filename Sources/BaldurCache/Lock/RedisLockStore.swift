import Foundation

/// The lock protocol on Redis, as Python Baldur speaks it (`SET NX PX`,
/// compare-and-delete, compare-and-`PEXPIRE`), plus the release signal and
/// fencing counter that Python ignores.
struct RedisLockStore: LockStore {
    let client: RedisClient

    var telemetry: Telemetry { client.telemetry }

    static func signalKey(_ key: String) -> RedisArgument { RedisArgument(key + ":signal") }
    static func fenceKey(_ key: String) -> RedisArgument { RedisArgument(key + ":fence") }

    func tryAcquire(key: String, owner: String, ttl: Duration) throws(RedisError) -> Bool {
        try client.send("SET", RedisArgument(key), RedisArgument(owner), "NX", "PX", RedisArgument(ttl.wholeMillisecondsRoundedUp)) == .status("OK")
    }

    func tryAcquireFenced(key: String, owner: String, ttl: Duration) throws(RedisError) -> Int64? {
        let token = try BaldurScripts.acquireFenced.run(
            on: client, keys: [RedisArgument(key), Self.fenceKey(key)],
            arguments: [RedisArgument(owner), RedisArgument(ttl.wholeMillisecondsRoundedUp)]
        ).expectInteger("fenced acquire script")
        return token > 0 ? token : nil
    }

    func release(key: String, owner: String) throws(RedisError) -> LockReleaseOutcome {
        switch try BaldurScripts.releaseLock.run(on: client, keys: [RedisArgument(key), Self.signalKey(key)], arguments: [RedisArgument(owner)])
            .expectInteger("lock release script") {
        case 1: return .released
        case 0: return .absent
        default: return .heldByAnother
        }
    }

    func currentFencingToken(key: String) throws(RedisError) -> Int64 {
        guard let text = try client.send("GET", Self.fenceKey(key)).string else { return 0 }
        guard let token = Int64(text) else {
            throw RedisError(.decoding, "the fencing counter of lock '\(key)' is not an integer")
        }
        return token
    }

    func extend(key: String, owner: String, by duration: Duration, adding: Bool) throws(RedisError) -> Bool {
        try BaldurScripts.extendLock.run(
            on: client, keys: [RedisArgument(key)],
            arguments: [RedisArgument(owner), RedisArgument(duration.wholeMillisecondsRoundedUp), adding ? "add" : "replace"]
        ).expectInteger("lock extend script") > 0
    }

    func owner(key: String) throws(RedisError) -> String? {
        try client.send("GET", RedisArgument(key)).string
    }

    /// `BLPOP key:signal seconds`: returns when a release pushes a token, or after `timeout`.
    ///
    /// A `BLPOP` holds a pooled connection for its whole wait, so at most a
    /// quarter of `maxConnections` (at least one) waiters of one client block
    /// in it at once; the others sleep their interval and poll, leaving the
    /// rest of the pool to ordinary traffic however many waiters there are.
    func waitForRelease(key: String, timeout: Duration) throws(RedisError) {
        // BLPOP 0 would block forever, and the wait must end well inside the socket timeout.
        var wait = max(timeout, .milliseconds(1))
        if let socketTimeout = client.configuration.socketTimeout { wait = min(wait, socketTimeout / 2) }
        guard client.blockingWaiters.enter() else {
            Thread.sleep(forTimeInterval: Double(wait.nanoseconds) / 1e9)
            return
        }
        defer { client.blockingWaiters.leave() }
        let milliseconds = wait.wholeMillisecondsRoundedUp
        let seconds = "\(milliseconds / 1000).\(String(milliseconds % 1000).leftPadded(to: 3))"
        try client.send("BLPOP", Self.signalKey(key), RedisArgument(seconds))
    }
}
