@testable import BaldurCache
import Dispatch
import Foundation
import Synchronization
import Testing

/// Starts `baldur-test-peer` with `arguments`; its stdout is collected.
final class PeerProcess: @unchecked Sendable {
    // One test drives each peer from one thread.
    let process = Process()
    private let output = Pipe()

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: try TestEnvironment.value("BALDUR_TEST_PEER"))
        process.arguments = arguments
        process.standardOutput = output
        try process.run()
    }

    /// Waits for the peer to exit and returns its stdout lines and exit status.
    func finish() -> (lines: [String], status: Int32) {
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init), process.terminationStatus)
    }

    func kill() { Foundation.kill(process.processIdentifier, SIGKILL) }
}

/// 4 `baldur-test-peer` processes x 16 threads call getOrSet on one cold
/// key through `url`: the factory runs once and every caller gets its value.
func expectGetOrSetAcrossProcesses(url: String) throws {
    let prefix = "bctest:\(UUID().uuidString):"
    let cache = try RedisCacheAdapter(url: url, keyPrefix: prefix)
    defer { _ = try? cache.flushAll(); cache.close() }
    let peers = try (0..<4).map { _ in try PeerProcess(["get-or-set", url, prefix, "cold-report", "16", "factory-runs"]) }
    var values: [String] = []
    for peer in peers {
        let (lines, status) = peer.finish()
        #expect(status == 0)
        values += lines
    }
    #expect(values.count == 64)
    #expect(Set(values).count == 1)
    #expect(values.first?.hasPrefix("computed-by-") == true)
    #expect(try cache.get("factory-runs") == 1)
}

@Suite("Distributed lock")
struct LockTests {
    @Test("a released lock is handed to a blocked waiter by the release signal, not by polling", .ownThread, arguments: Provider.allCases)
    func signalledHandoff(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let holder = cache.getLock("handoff", timeout: .seconds(30))
            try holder.acquire()
            // A 60 s poll interval and a 5 s wait: only the signal can deliver the lock in time.
            let template = cache.getLock("handoff", timeout: .seconds(30))
            let waiters = (0..<8).map { _ in slowPollingLock(like: template, cache: cache) }
            let acquired = Atomic<Int>(0)
            let group = DispatchGroup()
            for waiter in waiters {
                DispatchQueue.global().async(group: group) {
                    if (try? waiter.acquire(blocking: true, timeout: .seconds(5))) == true {
                        acquired.add(1, ordering: .relaxed)
                        Thread.sleep(forTimeInterval: 0.01)
                        try? waiter.release()  // signals the next waiter
                    }
                }
            }
            Thread.sleep(forTimeInterval: 0.2)
            try holder.release()
            group.wait()
            #expect(acquired.load(ordering: .relaxed) == 8)
        }
    }

    @Test("32 waiters (16 threads, 16 tasks) beyond the BLPOP budget with a 20 s poll interval all acquire in turn within 15 s, before any poll: a release wakes the next waiter")
    func handoffNeverWaitsForThePoll() async throws {
        var configuration = try TestEnvironment.configuration()
        // A budget of 2 BLPOP waiters: 30 of the 32 wait without one.
        configuration.pool.maxConnections = 8
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let key = "bctest:handoff:\(UUID().uuidString)"
        let waiter: @Sendable () -> DistributedLock = {
            DistributedLock(key: key, store: RedisLockStore(client: client), timeout: .seconds(30), blockingTimeout: nil, pollInterval: .seconds(20))
        }
        let holder = waiter()
        try await holder.acquire()
        let acquired = PlainMutex(0)
        let start = ContinuousClock.now
        async let threads: Void = withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread {
                runOnThreads(16) { _ in
                    let lock = waiter()
                    if (try? lock.acquire(blocking: true, timeout: .seconds(15))) == true {
                        acquired.withLock { $0 += 1 }
                        Thread.sleep(forTimeInterval: 0.002)
                        try? lock.release()
                    }
                }
                done.resume()
            }.start()
        }
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    let lock = waiter()
                    if (try? await lock.acquire(blocking: true, timeout: .seconds(15))) == true {
                        acquired.withLock { $0 += 1 }
                        try? await Task.sleep(for: .milliseconds(2))
                        try? await lock.release()
                    }
                }
            }
            // Every waiter is queued before the first release.
            try? await Task.sleep(for: .milliseconds(300))
            try? await holder.release()
        }
        await threads
        let elapsed = start.duration(to: .now)
        #expect(acquired.withLock { $0 } == 32)
        // One poll interval is 16-24 s: a waiter that waited for it would
        // pass its 15 s acquire timeout and fail to acquire. (With a 10 s poll
        // and a 5 s bound, the handoffs once took 5.27 s under ThreadSanitizer
        // in CI, all by signal: the margin is now three times that.)
        #expect(elapsed < .seconds(15), "the 32 handoffs took \(elapsed)")
    }

    @Test("uncontended acquire + release is two commands: SET NX PX and one EVALSHA", .ownThread)
    func twoRoundTrips() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let cache = try RedisCacheAdapter(url: server.url, keyPrefix: "")
        defer { cache.close() }
        let lock = cache.getLock("rt")
        try lock.acquire()
        try lock.release()   // loads the script
        try cache.rawClient.send("CONFIG", "RESETSTAT")
        try lock.acquire()
        try lock.release()
        let stats = try cache.rawClient.send("INFO", "commandstats").string ?? ""
        var calls: [String: Int] = [:]
        for line in stats.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_") {
            let name = line.dropFirst("cmdstat_".count).prefix { $0 != ":" }
            let count = line.split(separator: ",").first?.split(separator: "=").last.flatMap { Int($0) }
            if !name.hasPrefix("config"), name != "info" { calls[String(name)] = count }
        }
        // Two commands from the client (SET, EVALSHA); the rest ran inside the release script.
        #expect(calls == ["set": 1, "evalsha": 1, "get": 1, "del": 1, "lpush": 1, "ltrim": 1, "pexpire": 1])
    }

    @Test("fencing tokens grow strictly, and a holder that outlived its lease is refused by the resource", .ownThread, arguments: Provider.allCases)
    func fencing(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let paused = cache.getLock("fenced", timeout: .milliseconds(200))
            let next = cache.getLock("fenced", timeout: .seconds(10))
            let first = try #require(try paused.acquireWithFencingToken(blocking: false))
            #expect(paused.fencingToken == first)
            let again = #expect(throws: RedisError.self) { try paused.acquireWithFencingToken(blocking: false) }
            #expect(again?.code == .invalidArgument)
            // The holder stalls past its 200 ms lease; the next holder takes over.
            let second = try #require(try next.acquireWithFencingToken(blocking: true, timeout: .seconds(3)))
            #expect(second > first)
            #expect(try cache.setIfFenced("report", "from the new holder", fencingToken: second))
            // The stale holder wakes up and writes: refused.
            #expect(try !cache.setIfFenced("report", "stale write", fencingToken: first))
            #expect(try cache.get("report") == "from the new holder")
            #expect(throws: RedisError.self) { try paused.release() }
            try next.release()
            let third = try #require(try next.acquireWithFencingToken(blocking: false))
            #expect(third > second)
            try next.release()
        }
    }

    @Test("auto-renewal keeps a short lock alive while held and stops at release", .ownThread, arguments: Provider.allCases)
    func autoRenewal(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let lock = cache.getLock("renewed", timeout: .milliseconds(600))
            let rival = cache.getLock("renewed", timeout: .seconds(10))
            try lock.withLock(autoRenew: true) { () throws in
                Thread.sleep(forTimeInterval: 2.0)   // more than three lock lifetimes
                #expect(try lock.owned())
                #expect(try !rival.acquire(blocking: false))
            }
            #expect(try !lock.locked())
            #expect(lock.lostError == nil)
            #expect(try rival.acquire(blocking: false))
            try rival.release()
        }
    }

    @Test("auto-renewal reports a lost lock to the holder and does not take it back", .ownThread, arguments: Provider.allCases)
    func renewalReportsLoss(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let lock = cache.getLock("lost", timeout: .milliseconds(300))
            try lock.acquire()
            let lost = DispatchSemaphore(value: 0)
            try lock.startAutoRenewal(every: .milliseconds(50)) { _ in lost.signal() }
            // Simulate expiry and takeover behind the holder's back.
            try forceDelete("lost", in: cache)
            let thief = cache.getLock("lost", timeout: .seconds(10))
            #expect(try thief.acquire(blocking: false))
            #expect(lost.wait(timeout: .now() + 2) == .success)
            #expect(lock.lostError?.code == .lockNotOwned)
            #expect(try thief.owned())
            #expect(throws: RedisError.self) { try lock.release() }
            try thief.release()
        }
    }

    @Test("auto-renewal never outlives its handle", .ownThread, arguments: Provider.allCases)
    func renewalEndsWithHandle(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            do {
                let lock = cache.getLock("abandoned", timeout: .milliseconds(300))
                try lock.acquire()
                try lock.startAutoRenewal(every: .milliseconds(50))
            }
            Thread.sleep(forTimeInterval: 0.8)
            #expect(try !cache.getLock("abandoned").locked())
        }
    }

    @Test("getOrSet runs the factory once for 16 concurrent callers, shares errors, and fails open", .ownThread, arguments: Provider.allCases)
    func getOrSetInProcess(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let runs = Atomic<Int>(0)
            let values = PlainMutex<[String]>([])
            runOnThreads(16) { _ in
                let value = try? cache.getOrSet("cold", as: String.self, ttl: .seconds(60)) {
                    runs.add(1, ordering: .relaxed)
                    Thread.sleep(forTimeInterval: 0.2)
                    return "computed"
                }
                values.withLock { $0.append(value ?? "error") }
            }
            #expect(runs.load(ordering: .relaxed) == 1)
            #expect(values.withLock { $0 } == Array(repeating: "computed", count: 16))
            #expect(try cache.get("cold") == "computed")
            #expect(try cache.getOrSet("cold", as: String.self) { "not called" } == "computed")

            struct FactoryFailed: Error {}
            #expect(throws: FactoryFailed.self) { try cache.getOrSet("failing", as: Int.self) { throw FactoryFailed() } }
            #expect(try cache.get("failing") == nil)
        }
        let closed = try Provider.redis.make()
        closed.close()
        #expect(try closed.getOrSet("any", as: Int.self) { 7 } == 7)
    }

    @Test("64 concurrent callers in 4 processes on a cold key run the factory once", .ownThread)
    func getOrSetAcrossProcesses() throws {
        try expectGetOrSetAcrossProcesses(url: TestEnvironment.url())
    }

    @Test("mutual exclusion: 4 processes x 8 threads never lose an update, also while Redis is paused", .ownThread)
    func mutualExclusion() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let prefix = "mutex:"
        let cache = try RedisCacheAdapter(url: server.url, keyPrefix: prefix)
        defer { cache.close() }
        for paused in [false, true] {
            _ = try cache.flushAll()
            let peers = try (0..<4).map { _ in
                try PeerProcess(["mutex", server.url, prefix, "lock", "counter", "done", "8", "6", "5000"])
            }
            if paused {
                Thread.sleep(forTimeInterval: 0.3)
                try cache.rawClient.send("CLIENT", "PAUSE", "700", "ALL")
            }
            var completed = 0
            for peer in peers {
                let (lines, status) = peer.finish()
                #expect(status == 0)
                completed += Int(lines.last?.split(separator: " ").last ?? "") ?? 0
            }
            #expect(completed == 4 * 8 * 6)
            #expect(try cache.get("counter") == .int(Int64(completed)))
            #expect(try cache.get("done") == .int(Int64(completed)))
        }
    }

    @Test("mutual exclusion holds when a holder is killed mid-section: its lock expires and the others go on", .ownThread)
    func killedHolder() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let prefix = "mutex:"
        let cache = try RedisCacheAdapter(url: server.url, keyPrefix: prefix)
        defer { cache.close() }
        let victim = try PeerProcess(["mutex", server.url, prefix, "lock", "counter", "done", "8", "1000", "1000"])
        let survivors = try (0..<3).map { _ in
            try PeerProcess(["mutex", server.url, prefix, "lock", "counter", "done", "8", "4", "1000"])
        }
        // Kill the victim while it holds the lock.
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let holder = try cache.rawClient.send("GET", "mutex:lock").string, holder.contains(":\(victim.process.processIdentifier):") {
                victim.kill()
                break
            }
            Thread.sleep(forTimeInterval: 0.001)
        }
        _ = victim.finish()
        #expect(victim.process.terminationReason == .uncaughtSignal)
        var completed = 0
        for peer in survivors {
            let (lines, status) = peer.finish()
            #expect(status == 0)
            completed += Int(lines.last?.split(separator: " ").last ?? "") ?? 0
        }
        #expect(completed == 3 * 8 * 4)
        let counter = try cache.get("counter")?.intValue ?? -1
        let done = try cache.get("done")?.intValue ?? -2
        #expect(counter == done)
        #expect(done >= Int64(completed))
    }

    @Test("Redlock over 5 masters: held with 2 down, refused with 3 held by others, validity reported honestly", .ownThread)
    func redlock() throws {
        let servers = try (0..<5).map { _ in try TestRedisServer() }
        defer { servers.forEach { $0.stop() } }
        let key = "redlock:\(UUID().uuidString)"
        let ttl = Duration.seconds(2)

        let lock = try Redlock(key: key, ttl: ttl, urls: servers.map(\.url))
        defer { lock.close() }
        let start = ContinuousClock.now
        let lease = try #require(try lock.acquire())
        let measured = ContinuousClock.now - start
        #expect(lease.grantedBy >= lock.quorum && lease.of == 5)
        #expect(lease.validity <= ttl - .milliseconds(22))
        #expect(lease.validity > .zero && lease.validity >= ttl - measured - ttl * 0.01 - .milliseconds(2))
        var holding = 0
        for server in servers where try RedisClient(url: server.url).send("GET", RedisArgument(key)).string == lock.owner {
            holding += 1
        }
        #expect(holding == lease.grantedBy)
        lock.release()
        for server in servers {
            #expect(try RedisClient(url: server.url).send("EXISTS", RedisArgument(key)) == .integer(0))
        }

        // Three masters already hold the key for someone else: no quorum, and nothing is left behind.
        for server in servers.prefix(3) {
            try RedisClient(url: server.url).send("SET", RedisArgument(key), "someone-else", "PX", 10000)
        }
        let contender = try Redlock(key: key, ttl: ttl, urls: servers.map(\.url))
        defer { contender.close() }
        #expect(try contender.acquire(attempts: 2, retryDelay: .milliseconds(20)) == nil)
        for server in servers.suffix(2) {
            #expect(try RedisClient(url: server.url).send("EXISTS", RedisArgument(key)) == .integer(0))
        }
        for server in servers.prefix(3) {
            #expect(try RedisClient(url: server.url).send("GET", RedisArgument(key)).string == "someone-else")
            try RedisClient(url: server.url).send("DEL", RedisArgument(key))
        }

        // Two masters down: the other three still make a quorum.
        servers[0].kill()
        servers[1].kill()
        let survivor = try Redlock(key: key, ttl: ttl, urls: servers.map(\.url))
        defer { survivor.close() }
        let partial = try #require(try survivor.acquire())
        #expect(partial.grantedBy == 3)
        survivor.release()

        // A third one down: no quorum.
        servers[2].kill()
        #expect(try survivor.acquire(attempts: 1) == nil)
    }

    @Test("Redlock refuses per-node timeouts that are not far below the TTL", .ownThread)
    func redlockTimeouts() throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let error = #expect(throws: RedisError.self) { try Redlock(key: "k", ttl: .seconds(5), clients: [client]) }
        #expect(error?.code == .invalidConfiguration)
    }
}

/// A handle on the same key as `lock` that polls only every 60 s.
private func slowPollingLock(like lock: DistributedLock, cache: any CacheProvider) -> DistributedLock {
    let store: any LockStore
    if let redis = cache as? RedisCacheAdapter {
        store = RedisLockStore(client: redis.rawClient)
    } else {
        store = lock.store
    }
    return DistributedLock(key: lock.key, store: store, timeout: lock.timeout, blockingTimeout: nil, pollInterval: .seconds(60))
}

/// Deletes a lock key behind its holder's back, as an expiry would.
private func forceDelete(_ name: String, in cache: any CacheProvider) throws {
    if let redis = cache as? RedisCacheAdapter {
        try redis.rawClient.send("DEL", RedisArgument(redis.getLock(name).key))
    } else {
        let lock = cache.getLock(name)
        let store = lock.store
        let owner = try #require(try store.owner(key: lock.key))
        #expect(try store.release(key: lock.key, owner: owner) == .released)
    }
}
