@testable import BaldurCache
import Foundation
import Synchronization
import Testing

/// Hardening: numbers, URLs and values from outside are checked where they
/// enter and become typed errors, never a trap, a hang or a silent default.
@Suite("Bad input becomes typed errors")
struct BadInputTests {
    /// A duration far past anything representable in milliseconds or nanoseconds.
    static let absurd: Duration = .seconds(Int64.max) + .milliseconds(500)

    @Test("set and expire with a TTL near Int64.max seconds are invalidArgument, and nothing is written", .ownThread, arguments: Provider.allCases)
    func hugeTTLsAreRefused(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            for ttl in [Self.absurd, .seconds(Int64.max), .seconds(9.3e18), .seconds(3_155_760_001)] {
                #expect(throws: RedisError.self) { try cache.set("k", 1, ttl: ttl) }
                let setError = #expect(throws: RedisError.self) { try cache.set("k", 1, ttl: ttl) }
                #expect(setError?.code == .invalidArgument)
                #expect(setError?.message.contains("at most") == true)
                #expect(throws: RedisError.self) { try cache.setnx("k", 1, ttl: ttl) }
                #expect(throws: RedisError.self) { try cache.mset(["k": 1], ttl: ttl) }
                #expect(throws: RedisError.self) { try cache.expire("k", ttl: ttl) }
                let casError = #expect(throws: RedisError.self) {
                    try cache.casDictField("k", field: "status", expected: "a", newValue: ["status": "b"] as JSONValue, ttl: ttl)
                }
                #expect(casError?.code == .invalidArgument)
                let pushError = #expect(throws: RedisError.self) { try cache.pushLimit("l", 1, maxLength: 3, ttl: ttl) }
                #expect(pushError?.code == .invalidArgument)
                #expect(throws: RedisError.self) { try cache.casTakeover("k", newRecord: ["status": "executing"] as JSONValue, staleBefore: 1, ttl: ttl) }
            }
            // 100 years is the longest accepted, and it is really sent.
            try cache.set("century", 1, ttl: .seconds(3_155_760_000))
            #expect(try (cache.lifetime(of: "century").timeToLive ?? .zero) > .seconds(3_155_000_000))
            #expect(try !cache.exists("k"))
            #expect(try !cache.exists("l"))
        }
    }

    @Test("lock timeouts and waits near Int64.max are invalidArgument, auto-renewing ones included", .ownThread, arguments: Provider.allCases)
    func hugeLockDurationsAreRefused(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let forever = cache.getLock("huge", timeout: .seconds(Int64.max))
            #expect((#expect(throws: RedisError.self) { try forever.acquire() })?.code == .invalidArgument)
            let renewing = cache.getLock("renewing", timeout: .seconds(1e11))
            #expect((#expect(throws: RedisError.self) { try renewing.withLock(autoRenew: true) {} })?.code == .invalidArgument)
            let patient = cache.getLock("patient", timeout: .seconds(10))
            #expect((#expect(throws: RedisError.self) { try patient.acquire(timeout: Self.absurd) })?.code == .invalidArgument)
            #expect(try !patient.locked())
            // Renewal intervals are checked against the lock's own timeout.
            try patient.acquire()
            #expect((#expect(throws: RedisError.self) { try patient.startAutoRenewal(every: .seconds(11)) })?.code == .invalidArgument)
            #expect((#expect(throws: RedisError.self) { try patient.extend(by: Self.absurd) })?.code == .invalidArgument)
            try patient.release()
        }
    }

    @Test("getOrSet with a lockTimeout or waitTimeout near Int64.max is invalidArgument, and the factory never runs", .ownThread, arguments: Provider.allCases)
    func getOrSetRefusesHugeTimeouts(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let runs = Atomic<Int>(0)
            for (lockTimeout, waitTimeout) in [(Duration.seconds(Int64.max), Duration.seconds(1)), (.seconds(10), Self.absurd)] {
                let error = #expect(throws: RedisError.self) {
                    try cache.getOrSet("k", as: Int.self, lockTimeout: lockTimeout, waitTimeout: waitTimeout) {
                        runs.add(1, ordering: .relaxed)
                        return 1
                    }
                }
                #expect(error?.code == .invalidArgument)
            }
            #expect(runs.load(ordering: .relaxed) == 0)
        }
    }

    @Test("a Redlock with a century-plus TTL, or absurd attempts, is refused", .ownThread)
    func redlockBounds() throws {
        let url = try TestEnvironment.url()
        #expect(throws: RedisError.self) { try Redlock(key: "k", ttl: .seconds(Int64.max), urls: [url]) }
        let lock = try Redlock(key: "bctest:\(UUID().uuidString)", ttl: .seconds(1), urls: [url])
        defer { lock.close() }
        #expect((#expect(throws: RedisError.self) { try lock.acquire(attempts: 0) })?.code == .invalidArgument)
        #expect((#expect(throws: RedisError.self) { try lock.acquire(retryDelay: Self.absurd) })?.code == .invalidArgument)
    }

    @Test("pool, socket and connect timeouts beyond 100 years are invalidConfiguration at creation, not a trap at first use", .ownThread)
    func hugeConfigurationDurations() throws {
        var configuration = try TestEnvironment.configuration()
        configuration.pool.timeout = .seconds(1e10)
        #expect((#expect(throws: RedisError.self) { try RedisClient(configuration: configuration) })?.code == .invalidConfiguration)
        configuration = try TestEnvironment.configuration()
        configuration.commandTimeout = .seconds(Int64.max)
        #expect((#expect(throws: RedisError.self) { try RedisClient(configuration: configuration) })?.code == .invalidConfiguration)
        configuration = try TestEnvironment.configuration()
        configuration.connectTimeout = Self.absurd
        #expect((#expect(throws: RedisError.self) { try RedisClient(configuration: configuration) })?.code == .invalidConfiguration)
        // A connection made directly checks the same way.
        #expect((#expect(throws: RedisError.self) {
            try RedisConnection(address: .tcp(host: "127.0.0.1", port: 6379), configuration: configuration)
        })?.code == .invalidConfiguration)
        // So does the adapter's own override.
        #expect((#expect(throws: RedisError.self) {
            try RedisCacheAdapter(url: TestEnvironment.url(), socketConnectTimeout: .seconds(1e19))
        })?.code == .invalidConfiguration)
    }

    @Test("environment durations too large to represent are invalidConfiguration naming the variable", .ownThread, arguments: [
        ("BALDUR_REDIS_SOCKET_TIMEOUT", "1e17"),
        ("BALDUR_REDIS_SOCKET_CONNECT_TIMEOUT", "1e300"),
        ("BALDUR_REDIS_HEALTH_CHECK_INTERVAL", "1e300"),
        ("BALDUR_REDIS_SOCKET_TIMEOUT", "inf"),
        ("BALDUR_REDIS_SOCKET_TIMEOUT", "nan"),
        ("BALDUR_REDIS_MAX_CONNECTIONS", "99999999999"),
        ("BALDUR_REDIS_SPIN_WAIT_US", "9223372036854775807"),
    ])
    func hugeEnvironmentDurations(name: String, value: String) {
        let error = #expect(throws: RedisError.self) {
            try RedisConfiguration.fromEnvironment(["BALDUR_REDIS_URL": "redis://127.0.0.1:1/0", name: value])
        }
        #expect(error?.code == .invalidConfiguration)
        let names = ["BALDUR_REDIS_SOCKET_TIMEOUT", "BALDUR_REDIS_SOCKET_CONNECT_TIMEOUT", "maxConnections", "spinWait", "BALDUR_REDIS_HEALTH_CHECK_INTERVAL"]
        #expect(names.contains { error?.message.contains($0) == true }, "\(error?.message ?? "")")
    }

    @Test("a cluster or Sentinel URL that points at a plain server is invalidConfiguration saying what the server is not", .ownThread, arguments: ["redis+cluster", "redis+sentinel"])
    func topologyURLAtAPlainServer(scheme: String) throws {
        guard case .standalone(.tcp(let host, let port)) = try TestEnvironment.configuration().topology else { return }
        let url = scheme == "redis+cluster" ? "redis+cluster://\(host):\(port)" : "redis+sentinel://mymaster@\(host):\(port)/0"
        var configuration = try RedisConfiguration(url: url)
        configuration.connectTimeout = .milliseconds(500)
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let error = #expect(throws: RedisError.self) { try client.send("GET", "k") }
        #expect(error?.code == .invalidConfiguration, "\(String(describing: error))")
        let expected = scheme == "redis+cluster" ? "is not a cluster node" : "is not a sentinel"
        #expect(error?.message.contains(expected) == true, "\(String(describing: error))")
    }

    @Test("a port outside 1...65535 built in code is invalidConfiguration, never a trap", .ownThread, arguments: [0, -1, 65536, Int.max, Int.min, 1 << 40])
    func portsOutOfRange(port: Int) {
        let configuration = RedisConfiguration(address: .tcp(host: "127.0.0.1", port: port))
        #expect((#expect(throws: RedisError.self) { try RedisClient(configuration: configuration) })?.code == .invalidConfiguration)
        #expect((#expect(throws: RedisError.self) {
            try RedisConnection(address: .tcp(host: "127.0.0.1", port: port), configuration: RedisConfiguration())
        })?.code == .invalidConfiguration)
    }

    @Test("a badly percent-encoded password is invalidConfiguration, never a silent connect without AUTH", .ownThread, arguments: [
        "redis://:real%zzPW@127.0.0.1:6379/0", "redis://user:pa%2@127.0.0.1/0", "redis://secret%@127.0.0.1/0", "unix://:bad%G0@/tmp/x.sock",
    ])
    func badlyEncodedPassword(url: String) {
        let error = #expect(throws: RedisError.self) { try RedisConfiguration(url: url) }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains("percent-encoded") == true)
        #expect(error?.message.contains("real") == false)
        #expect(error?.message.contains("pa%2") == false)
    }

    @Test("hosts with NUL, spaces or other stray characters, and ports with signs or spaces, are refused", .ownThread, arguments: [
        "redis://127.0.0.1\u{0}.evil.example:6379/0", "redis://127.0.0.1 :6379/0", "redis://exa mple:6379/0", "redis://127.0.0.1:+6379/0",
        "redis://127.0.0.1: 6379/0", "redis://127.0.0.1:-1/0", "redis://127.0.0.1:06379x/0", "redis://host\tname/0", "redis://h\u{e9}st/0",
        "redis+cluster://127.0.0.1:7000,bad\u{0}host:7001", "redis+sentinel://mymaster@127.0.0.1:+26379",
    ])
    func strayHostsAndPorts(url: String) {
        let error = #expect(throws: RedisError.self) { try RedisConfiguration(url: url) }
        #expect(error?.code == .invalidConfiguration, "\(url)")
        // Built in code, the same host is refused too.
        if url.contains("\u{0}") {
            let configuration = RedisConfiguration(address: .tcp(host: "127.0.0.1\u{0}.evil.example", port: 6379))
            #expect((#expect(throws: RedisError.self) { try configuration.validate() })?.code == .invalidConfiguration)
        }
    }

    @Test("ordinary hosts still parse: names, IPv4, bracketed IPv6, and a port with leading zero", .ownThread)
    func ordinaryHostsParse() throws {
        #expect(try RedisConfiguration(url: "redis://cache-1.internal_zone.example:6380/2").topology == .standalone(.tcp(host: "cache-1.internal_zone.example", port: 6380)))
        #expect(try RedisConfiguration(url: "redis://[::1]:6379").topology == .standalone(.tcp(host: "::1", port: 6379)))
        #expect(try RedisConfiguration(url: "redis://10.1.2.3:06379").topology == .standalone(.tcp(host: "10.1.2.3", port: 6379)))
        #expect(try RedisConfiguration(url: "redis://:p%40ss@127.0.0.1").password == "p@ss")
    }

    @Test("a JSON value nested 513 deep is invalidArgument before anything is written; 512 deep round-trips", .ownThread, arguments: Provider.allCases)
    func jsonDepthIsSharedByWriterAndReader(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let deepest = Self.nested(JSONCodec.maxDepth)
            try cache.set("deepest", deepest, ttl: .seconds(60))
            #expect(try cache.get("deepest") == deepest)
            let tooDeep = Self.nested(JSONCodec.maxDepth + 1)
            let error = #expect(throws: RedisError.self) { try cache.set("too-deep", tooDeep, ttl: .seconds(60)) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains("512") == true)
            #expect(throws: RedisError.self) { try cache.mset(["ok": .int(1), "too-deep": tooDeep], ttl: .seconds(60)) }
            #expect(throws: RedisError.self) { try cache.mset(["ok": .int(1), "too-deep": tooDeep], ttl: nil) }
            #expect(throws: RedisError.self) { try cache.hset("h", field: "f", tooDeep) }
            #expect(try !cache.exists("too-deep"))
            #expect(try !cache.exists("ok"))
            #expect(try !cache.exists("h"))
        }
    }

    /// 100,000 arrays deep. Built iteratively; a global, so it is never
    /// freed: the runtime frees nested values recursively, which such a
    /// value would overflow the stack doing. `set` must not need that depth.
    static let abyss = nested(100_000)

    @Test("a JSON value nested 100,000 deep is invalidArgument, not a stack overflow", .ownThread, arguments: Provider.allCases)
    func jsonHundredThousandDeep(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let error = #expect(throws: RedisError.self) { try cache.set("abyss", Self.abyss, ttl: .seconds(60)) }
            #expect(error?.code == .invalidArgument)
            #expect(throws: RedisError.self) { try cache.mset(["abyss": Self.abyss], ttl: .seconds(60)) }
            #expect(try !cache.exists("abyss"))
        }
    }

    @Test("getOrSet of one key as Int and as String at once: each gets its own type, no trap", .ownThread, arguments: Provider.allCases)
    func getOrSetKeepsTypesApart(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let results = PlainMutex<(Int?, String?)>((nil, nil))
            let started = DispatchSemaphore(value: 0)
            runOnThreads(2) { index in
                if index == 0 {
                    let value = try? cache.getOrSet("shared", as: Int.self, waitTimeout: .milliseconds(200)) {
                        started.signal()
                        Thread.sleep(forTimeInterval: 0.4)
                        return 42
                    }
                    results.withLock { $0.0 = value }
                } else {
                    started.wait()
                    let value = try? cache.getOrSet("shared", as: String.self, waitTimeout: .milliseconds(200)) { "text" }
                    results.withLock { $0.1 = value }
                }
            }
            let (number, text) = results.withLock { $0 }
            #expect(number == 42)
            #expect(text == "text")
        }
    }

    @Test("casDictField refuses numbers of 2^53 and above, which a double cannot tell apart; below that it compares exactly", .ownThread, arguments: Provider.allCases)
    func casDictFieldNeverMatchesFalsely(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            try cache.set("record", ["version": .int(9_007_199_254_740_993)] as JSONValue, ttl: nil)
            for expected: JSONValue in [.int(9_007_199_254_740_992), .int(-9_007_199_254_740_992), .int(Int64.max), .double(9_007_199_254_740_992), .double(.infinity), .double(.nan)] {
                let error = #expect(throws: RedisError.self) {
                    try cache.casDictField("record", field: "version", expected: expected, newValue: ["version": .int(0)] as JSONValue, ttl: nil)
                }
                #expect(error?.code == .invalidArgument, "\(expected)")
            }
            #expect(try cache.get("record") == ["version": .int(9_007_199_254_740_993)])
            // The largest exact integer compares exactly, both ways.
            try cache.set("exact", ["version": .int(9_007_199_254_740_991)] as JSONValue, ttl: nil)
            #expect(try !cache.casDictField("exact", field: "version", expected: .int(9_007_199_254_740_990), newValue: ["version": .int(1)] as JSONValue, ttl: nil))
            #expect(try cache.casDictField("exact", field: "version", expected: .int(9_007_199_254_740_991), newValue: ["version": .int(2)] as JSONValue, ttl: nil))
            #expect(try cache.get("exact") == ["version": .int(2)])
        }
    }

    /// `[[[...1...]]]`, `depth` arrays deep.
    static func nested(_ depth: Int) -> JSONValue {
        var value = JSONValue.int(1)
        for _ in 0..<depth { value = .array([value]) }
        return value
    }
}
