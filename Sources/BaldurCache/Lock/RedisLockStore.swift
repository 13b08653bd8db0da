import Logging
import Foundation

/// The lock protocol on Redis, as Python Baldur speaks it (`SET NX PX`,
/// compare-and-delete, compare-and-`PEXPIRE`), plus the release signal and
/// fencing counter that Python ignores.
struct RedisLockStore: LockStore {
    let client: RedisClient
    var outageLimit: Duration { client.configuration.retry.lockOutageLimit }
    var logger: Logger? { client.logger }

    var telemetry: Telemetry { client.telemetry }

    static func signalKey(_ key: String) -> RedisArgument { RedisArgument(ClusterSlot.companion(of: key, suffix: ":signal")) }
    static func fenceKey(_ key: String) -> RedisArgument { RedisArgument(ClusterSlot.companion(of: key, suffix: ":fence")) }

    // Each operation is one CacheCall, run on the pool by the synchronous
    // lock calls and on the event loop by the async ones.

    func tryAcquire(key: String, owner: String, ttl: Duration) throws(RedisError) -> Bool {
        try acquireCall(key: key, owner: owner, ttl: ttl).run(on: client)
    }

    func tryAcquire(key: String, owner: String, ttl: Duration) async throws -> Bool {
        try await acquireCall(key: key, owner: owner, ttl: ttl).run(on: client)
    }

    private func acquireCall(key: String, owner: String, ttl: Duration) -> CacheCall<Bool> {
        CacheCall(.command(["SET", RedisArgument(key), RedisArgument(owner), "NX", "PX", RedisArgument(ttl.wholeMillisecondsRoundedUp)])) { reply in
            reply == .status("OK")
        }
    }

    func tryAcquireFenced(key: String, owner: String, ttl: Duration) throws(RedisError) -> Int64? {
        try acquireFencedCall(key: key, owner: owner, ttl: ttl).run(on: client)
    }

    func tryAcquireFenced(key: String, owner: String, ttl: Duration) async throws -> Int64? {
        try await acquireFencedCall(key: key, owner: owner, ttl: ttl).run(on: client)
    }

    private func acquireFencedCall(key: String, owner: String, ttl: Duration) -> CacheCall<Int64?> {
        let request = CacheRequest.script(
            BaldurScripts.acquireFenced, keys: [RedisArgument(key), Self.fenceKey(key)],
            arguments: [RedisArgument(owner), RedisArgument(ttl.wholeMillisecondsRoundedUp)]
        )
        return CacheCall(request) { reply throws(RedisError) in
            let token = try reply.expectInteger("fenced acquire script")
            return token > 0 ? token : nil
        }
    }

    func release(key: String, owner: String) throws(RedisError) -> LockReleaseOutcome {
        let outcome = try releaseCall(key: key, owner: owner).run(on: client)
        if outcome == .released { client.localLockWaiters.released(key) }
        return outcome
    }

    func release(key: String, owner: String) async throws -> LockReleaseOutcome {
        let outcome = try await releaseCall(key: key, owner: owner).run(on: client)
        if outcome == .released { client.localLockWaiters.released(key) }
        return outcome
    }

    private func releaseCall(key: String, owner: String) -> CacheCall<LockReleaseOutcome> {
        let request = CacheRequest.script(BaldurScripts.releaseLock, keys: [RedisArgument(key), Self.signalKey(key)], arguments: [RedisArgument(owner)])
        return CacheCall(request) { reply throws(RedisError) in
            switch try reply.expectInteger("lock release script") {
            case 1: return .released
            case 0: return .absent
            default: return .heldByAnother
            }
        }
    }

    func currentFencingToken(key: String) throws(RedisError) -> Int64 {
        try fencingTokenCall(key: key).run(on: client)
    }

    func currentFencingToken(key: String) async throws -> Int64 {
        try await fencingTokenCall(key: key).run(on: client)
    }

    private func fencingTokenCall(key: String) -> CacheCall<Int64> {
        CacheCall(.command(["GET", Self.fenceKey(key)])) { reply throws(RedisError) in
            guard let text = reply.string else { return 0 }
            guard let token = Int64(text) else {
                throw RedisError(.decoding, "the fencing counter of lock '\(key)' is not an integer")
            }
            return token
        }
    }

    func extend(key: String, owner: String, by duration: Duration, adding: Bool) throws(RedisError) -> Bool {
        try extendCall(key: key, owner: owner, by: duration, adding: adding).run(on: client)
    }

    func extend(key: String, owner: String, by duration: Duration, adding: Bool) async throws -> Bool {
        try await extendCall(key: key, owner: owner, by: duration, adding: adding).run(on: client)
    }

    private func extendCall(key: String, owner: String, by duration: Duration, adding: Bool) -> CacheCall<Bool> {
        let request = CacheRequest.script(
            BaldurScripts.extendLock, keys: [RedisArgument(key)],
            arguments: [RedisArgument(owner), RedisArgument(duration.wholeMillisecondsRoundedUp), adding ? "add" : "replace"]
        )
        return CacheCall(request) { reply throws(RedisError) in try reply.expectInteger("lock extend script") > 0 }
    }

    func owner(key: String) throws(RedisError) -> String? {
        try client.send("GET", RedisArgument(key)).string
    }

    func owner(key: String) async throws -> String? {
        try await client.send("GET", RedisArgument(key)).string
    }

    // A waiter beyond the BLPOP budget waits for a release by this client
    // (LocalLockWaiters), or the poll interval.

    func waitForRelease(key: String, timeout: Duration) throws(RedisError) {
        let wait = waitDuration(timeout)
        guard client.blockingWaiters.enter() else {
            let signal = client.localLockWaiters.enter(key)
            defer { client.localLockWaiters.leave(signal, key: key) }
            _ = signal.wait(timeout: wait)
            return
        }
        defer { client.blockingWaiters.leave() }
        try client.localLockWaiters.popping(key) { () throws(RedisError) in _ = try client.send(blockingPop(key, wait)) }
    }

    func waitForRelease(key: String, timeout: Duration) async throws {
        let wait = waitDuration(timeout)
        guard client.blockingWaiters.enter() else {
            let signal = client.localLockWaiters.enter(key)
            defer { client.localLockWaiters.leave(signal, key: key) }
            await signal.wait(timeout: wait)
            try Task.checkCancellation()
            return
        }
        defer { client.blockingWaiters.leave() }
        // A blocking command: the client runs it on a dedicated connection.
        try await client.localLockWaiters.popping(key) { _ = try await client.send(blockingPop(key, wait)) }
    }

    /// How long one wait blocks: `BLPOP 0` would block forever. At most half
    /// the socket timeout, so that a wait comes back to its loop (deadline,
    /// outage limit, shutdown) often; its reply may take that plus
    /// `blockingCommandTimeout` (see ``BlockingCommand``).
    private func waitDuration(_ timeout: Duration) -> Duration {
        var wait = max(timeout, .milliseconds(1))
        if let commandTimeout = client.configuration.commandTimeout { wait = min(wait, commandTimeout / 2) }
        return wait
    }

    /// `BLPOP key:signal seconds.mmm`.
    private func blockingPop(_ key: String, _ wait: Duration) -> [RedisArgument] {
        let milliseconds = wait.wholeMillisecondsRoundedUp
        let seconds = "\(milliseconds / 1000).\(String(milliseconds % 1000).leftPadded(to: 3))"
        return ["BLPOP", Self.signalKey(key), RedisArgument(seconds)]
    }
}
