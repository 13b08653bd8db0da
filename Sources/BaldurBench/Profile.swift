import BaldurCache
import Dispatch
import Foundation
import Logging

/// `--profile WORKLOAD --ops N [--tasks T] [--tls-url URL] [--cluster-url URL]`:
/// runs one workload N times and exits, for callgrind (`scripts/perf-guard.sh`)
/// or perf. Each workload does its own setup first, with the reply spin-wait
/// off (a spinning wait counts instructions that depend on timing), so that
/// two runs of N and 2N operations differ by exactly N operations' work.
///
/// | workload | one operation |
/// |---|---|
/// | `rawget` | `send("GET")` on the blocking pool, 1 connection |
/// | `get`, `set` | the adapter's blocking `get`/`set` of an 87-byte record |
/// | `pipeline` | a 100-command `GET` pipeline (the guard counts per command) |
/// | `mget100`, `mset100ttl` | 100 keys (per key) |
/// | `nearhit` | a blocking `get` served by the near cache |
/// | `asyncnearhit` | an async `get` served by the near cache, 1 task |
/// | `tlsget` | the adapter's blocking `get` over `--tls-url` |
/// | `clustermget100` | `mget` of 100 keys over `--cluster-url` (per key) |
/// | `asyncraw`, `asyncget` | async `GET`/`get` from `--tasks` tasks (default 1), N calls each; `--on-loop` runs the tasks on the event loop's executor |
/// | `asyncraw256` | `asyncraw` from 256 tasks, N calls each (the guard counts per call): replies arrive many to a read |
enum Profile {
    static let workloads = [
        "rawget", "get", "set", "pipeline", "mget100", "mset100ttl", "nearhit", "asyncnearhit", "tlsget", "clustermget100", "asyncraw", "asyncget", "asyncraw256",
    ]

    static func run(_ workload: String, url: String) -> Never {
        guard workloads.contains(workload) else { fail("unknown profile \(workload); one of \(workloads.joined(separator: ", "))") }
        guard let count = option("--ops").flatMap(Int.init), (1...10_000_000).contains(count) else { fail("--ops must be 1...10,000,000") }
        guard let taskOption = Int(option("--tasks") ?? "1"), (1...10_000).contains(taskOption) else { fail("--tasks must be 1...10,000") }
        let tasks = workload == "asyncraw256" ? 256 : taskOption
        let record: JSONValue = ["id": 42, "status": "executing", "started_at": 1732640000.5, "attempt": 3, "tags": ["a", "b"]]
        let keys = (0..<100).map { "k\($0)" }
        let values = Dictionary(uniqueKeysWithValues: keys.map { ($0, record) })
        let pipeline: [[RedisArgument]] = (0..<100).map { _ in ["GET", "bench:swift:record"] }
        do {
            switch workload {
            case "tlsget":
                guard let tlsURL = option("--tls-url") else { fail("tlsget needs --tls-url") }
                let cache = try adapter(tlsURL)
                try cache.set("record", record)
                for _ in 0..<count { _ = try cache.get("record") }
            case "clustermget100":
                guard let clusterURL = option("--cluster-url") else { fail("clustermget100 needs --cluster-url") }
                let cache = try adapter(clusterURL)
                try cache.mset(values)
                for _ in 0..<count { _ = try cache.mget(keys) }
            case "nearhit", "asyncnearhit":
                let cache = try adapter(url, nearCache: NearCacheConfiguration())
                try cache.set("record", record)
                // Read until it is kept (the invalidation of the write above may drop the first value kept).
                let warm = ContinuousClock.now + .seconds(10)
                while (cache.nearCacheStatistics?.hits ?? 0) < 100 {
                    guard ContinuousClock.now < warm else { fail("the near cache kept nothing") }
                    _ = try cache.get("record")
                }
                let before = cache.nearCacheStatistics?.hits ?? 0
                if workload == "nearhit" {
                    for _ in 0..<count { _ = try cache.get("record") }
                } else {
                    wait { for _ in 0..<count { _ = try? await cache.get("record") } }
                }
                guard (cache.nearCacheStatistics?.hits ?? 0) - before == count else { fail("not every read was served from memory") }
            case "asyncraw", "asyncget", "asyncraw256":
                let cache = try adapter(url, connections: 16)
                try cache.set("record", record)
                // A failed call would count fewer instructions, not more: it fails the run instead.
                @Sendable func calls() async throws {
                    for _ in 0..<count {
                        if workload != "asyncget" { _ = try await cache.rawClient.send("GET", "bench:swift:record") } else { _ = try await cache.get("record") }
                    }
                }
                let executor = CommandLine.arguments.contains("--on-loop") ? cache.rawClient.eventLoopExecutor : nil
                wait {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for _ in 0..<tasks { group.addTask(preferring: executor) { try await calls() } }
                        try await group.waitForAll()
                    }
                }
            default:
                let cache = try adapter(url)
                try cache.set("record", record)
                try cache.mset(values)
                for _ in 0..<count {
                    switch workload {
                    case "rawget": _ = try cache.rawClient.send("GET", "bench:swift:record")
                    case "get": _ = try cache.get("record")
                    case "set": try cache.set("record", record)
                    case "pipeline": _ = try cache.rawClient.pipeline(pipeline)
                    case "mget100": _ = try cache.mget(keys)
                    default: try cache.mset(values, ttl: .seconds(60))
                    }
                }
            }
        } catch {
            fail("\(workload): \(error)")
        }
        exit(0)
    }

    private static func adapter(_ url: String, connections: Int = 1, nearCache: NearCacheConfiguration? = nil) throws -> RedisCacheAdapter {
        var configuration = try RedisConfiguration(url: url)
        configuration.pool.maxConnections = connections
        configuration.pool.spinWait = .zero
        var logger = Logger(label: "baldur-bench")
        logger.logLevel = .critical
        return try RedisCacheAdapter(client: RedisClient(configuration: configuration, logger: logger), keyPrefix: "bench:swift:", logger: logger, nearCache: nearCache)
    }

    /// Runs `body` in a task and blocks this thread until it ends.
    private static func wait(_ body: @Sendable @escaping () async throws -> Void) {
        let done = DispatchSemaphore(value: 0)
        Task {
            do { try await body() } catch { fail("\(error)") }
            done.signal()
        }
        done.wait()
    }

    private static func option(_ name: String) -> String? {
        let arguments = CommandLine.arguments
        guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
        return arguments[index + 1]
    }

    private static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("baldur-bench --profile: \(message)\n".utf8))
        exit(1)
    }
}
