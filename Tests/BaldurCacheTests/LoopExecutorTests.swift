@testable import BaldurCache
import Foundation
import Testing

/// Tasks that prefer the event loop's executor run on the loop's thread;
/// their calls, timeouts and cancellations behave as everywhere else.
@Suite("The event loop as a task executor", .serialized)
struct LoopExecutorTests {
    /// The calling thread's name (a synchronous function, callable from async code).
    /// Whether the caller runs on the event loop's thread (a synchronous function, callable from async code).
    private static func onTheLoop() -> Bool { EventLoop.shared[0].isCurrent }

    @Test("64 tasks preferring the loop's executor run on the loop's thread, and each reads back only its own values (send, get, mget, pipeline, withConnection, a lock)", .timeLimit(.minutes(1)))
    func tasksOnTheLoopReadTheirOwnValues() async throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: prefix)
        defer { cache.close() }
        let executor = cache.rawClient.eventLoopExecutor
        let problems = try await withThrowingTaskGroup(of: [String].self) { group in
            for task in 0..<64 {
                group.addTask(executorPreference: executor) {
                    var problems: [String] = []
                    if !Self.onTheLoop() { problems.append("task \(task) began off the loop's thread") }
                    for round in 0..<50 {
                        let value: JSONValue = ["task": .int(Int64(task)), "round": .int(Int64(round))]
                        try await cache.set("k\(task)", value, ttl: .seconds(60))
                        if try await cache.get("k\(task)") != value { problems.append("task \(task) round \(round): get") }
                        let raw = try await cache.rawClient.send("GET", RedisArgument(prefix + "k\(task)"))
                        if raw.bytes.map({ try? JSONValue(parsing: $0) }) != value { problems.append("task \(task) round \(round): GET") }
                    }
                    let replies = try await cache.rawClient.pipeline([["INCRBY", RedisArgument(prefix + "n\(task)"), RedisArgument(task)], ["GET", RedisArgument(prefix + "n\(task)")]])
                    if replies != [.integer(Int64(task)), .bulk(Array(String(task).utf8))] { problems.append("task \(task): pipeline \(replies)") }
                    let exec = try await cache.rawClient.withConnection { connection in
                        try await connection.transaction([["INCR", RedisArgument(prefix + "t\(task)")], ["INCR", RedisArgument(prefix + "t\(task)")]])
                    }
                    if exec != [.integer(1), .integer(2)] { problems.append("task \(task): transaction \(String(describing: exec))") }
                    let many = try await cache.mget(["k\(task)", "absent\(task)"])
                    if many.keys.sorted() != ["k\(task)"] { problems.append("task \(task): mget \(many)") }
                    try await cache.getLock("lock\(task % 4)", timeout: .seconds(10), blockingTimeout: .seconds(20)).withLock { }
                    if !Self.onTheLoop() { problems.append("task \(task) ended off the loop's thread") }
                    return problems
                }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(problems == [])
        _ = try await cache.flushAll()
    }

    @Test("on the loop's executor a call to a stalled server still ends at commandTimeout, and a cancelled call at once", .timeLimit(.minutes(1)))
    func timeoutsAndCancellationOnTheLoop() async throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        var configuration = try server.configuration(commandTimeout: .milliseconds(400))
        configuration.retry.onTimeout = false
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let executor = client.eventLoopExecutor
        try await client.ping()
        server.pause()
        let timedOut = Task(executorPreference: executor) { () -> (RedisError.Code?, Duration) in
            let start = ContinuousClock.now
            do {
                try await client.send("SET", "stalled", "v")
                return (nil, start.duration(to: .now))
            } catch {
                return ((error as? RedisError)?.code, start.duration(to: .now))
            }
        }
        let (code, after) = await timedOut.value
        #expect(code == .readTimeout, "\(String(describing: code))")
        #expect(after >= .milliseconds(350) && after < .seconds(3), "\(after)")

        let cancelled = Task(executorPreference: executor) { () -> (String, Duration) in
            let start = ContinuousClock.now
            do {
                try await client.send("BLPOP", "never", "30")
                return ("answered", start.duration(to: .now))
            } catch {
                return ("\(type(of: error))", start.duration(to: .now))
            }
        }
        try await Task.sleep(for: .milliseconds(100))
        cancelled.cancel()
        let (outcome, waited) = await cancelled.value
        #expect(outcome == "CancellationError", "\(outcome)")
        #expect(waited < .seconds(2), "\(waited)")
        server.resume()
        let pong = try await Task(executorPreference: executor) { try await client.send("PING") }.value
        #expect(pong == .status("PONG"))
    }

    @Test("the engine's threads carry their names where the system shows them (/proc, top -H, perf): the loop, and a connect under way")
    func threadsAreNamed() async throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        var configuration = try server.configuration(commandTimeout: .seconds(2))
        configuration.database = 1  // a connect sends SELECT, and waits for its reply
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        try await client.ping()
        #expect(Self.threadNames().contains("baldur-loop-0"), "\(Self.threadNames())")
        // A new connection's SELECT to a stalled server waits on the connect's thread.
        server.pause()
        defer { server.resume() }
        let connecting = Task { try await client.withConnection { (_: RedisDedicatedConnection) in } }
        let deadline = ContinuousClock.now + .seconds(3)
        while !Self.threadNames().contains("baldur-connect"), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(Self.threadNames().contains("baldur-connect"), "\(Self.threadNames())")
        connecting.cancel()
        _ = await connecting.result
    }

    /// The names of this process's threads, as the kernel has them.
    private static func threadNames() -> Set<String> {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return Set(tasks.compactMap { task in
            (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        })
    }
}
