/// The lock protocol on Redis, as Python Baldur speaks it (`SET NX PX`,
/// compare-and-delete, compare-and-`PEXPIRE`), plus the release signal and
/// fencing counter that Python ignores.
struct RedisLockStore: LockStore {
    let client: RedisClient

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

    func release(key: String, owner: String) throws(RedisError) -> Bool {
        try BaldurScripts.releaseLock.run(on: client, keys: [RedisArgument(key), Self.signalKey(key)], arguments: [RedisArgument(owner)])
            .expectInteger("lock release script") == 1
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
    func waitForRelease(key: String, timeout: Duration) throws(RedisError) {
        // BLPOP 0 would block forever, and the wait must end well inside the socket timeout.
        var wait = max(timeout, .milliseconds(1))
        if let socketTimeout = client.configuration.socketTimeout { wait = min(wait, socketTimeout / 2) }
        let milliseconds = wait.wholeMillisecondsRoundedUp
        let seconds = "\(milliseconds / 1000).\(String(milliseconds % 1000).leftPadded(to: 3))"
        try client.send("BLPOP", Self.signalKey(key), RedisArgument(seconds))
    }
}
