// baldur-workload: a mixed workload for the valgrind leak check
// (scripts/leak-check.sh). It drives every path that allocates or frees a
// hiredis context or reply: plain commands, binary values, pipelines, nested
// script replies, server errors, killed connections, read timeouts, pool
// exhaustion and reconnects, and leaves a client open at exit, whose
// connections must count as reachable. It exits non-zero if the server
// answers wrongly.
//
// Usage: baldur-workload --url redis://127.0.0.1:PORT/0 [--commands N]
// The server must be private to this run: the workload pauses it briefly.
// With a redis+cluster:// URL it runs the cluster paths instead: commands
// routed by slot, multi-key commands split and merged, pipelines split per
// node, SCAN across masters, killed connections, sync and async.

import BaldurCache
import Dispatch
import Foundation
import Logging
import Synchronization

func option(_ name: String) -> String? {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

func check(_ condition: Bool, _ what: String) {
    if !condition {
        FileHandle.standardError.write(Data("baldur-workload: \(what)\n".utf8))
        exit(1)
    }
}

guard let url = option("--url") else {
    FileHandle.standardError.write(Data("usage: baldur-workload --url redis://HOST:PORT/DB [--commands N]\n".utf8))
    exit(2)
}
let target = Int(option("--commands") ?? "100000") ?? 100_000

/// A client left open when the process exits, as a service's clients are
/// when it exits without closing them: its connections (one blocking, one on
/// the event loop) must be reachable at exit, not reported lost.
nonisolated(unsafe) var openAtExit: RedisClient?

/// The cluster paths, `target` commands or more; returns how many were sent.
func clusterWorkload(_ configuration: RedisConfiguration, target: Int) async throws -> Int {
    let client = try RedisClient(configuration: configuration)
    var sent = 0
    var round = 0
    while sent < target {
        round += 1
        let keys = (0..<50).map { RedisArgument("workload:cluster:\(round % 7):\($0)") }
        _ = try blockingSend(client, ["MSET"] + keys.flatMap { [$0, RedisArgument("v\(round)")] })
        check(try blockingSend(client, ["MGET"] + keys).array?.allSatisfy { $0.string == "v\(round)" } == true, "cluster MGET values")
        let replies = try blockingPipeline(client, keys.prefix(20).flatMap { key in [["INCR", key], ["GET", key]] })
        check(replies.count == 40, "cluster pipeline reply count")
        var cursor = "0", scanned = 0
        repeat {
            let page = try blockingSend(client, ["SCAN", RedisArgument(cursor), "MATCH", "workload:cluster:*", "COUNT", 100])
            cursor = page.array?.first?.string ?? "0"
            scanned += 1
        } while cursor != "0"
        check(try blockingSend(client, ["DEL"] + keys) == .integer(50), "cluster DEL count")
        sent += 4 + scanned
        // Async: concurrent routed calls and a split MGET.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    let key = RedisArgument("workload:cluster:async:\(task)")
                    try await client.send("SET", key, RedisArgument(task))
                    check(try await client.send("GET", key).string == "\(task)", "async cluster GET returned another task's value")
                }
            }
            try await group.waitForAll()
        }
        _ = try await client.send(["MGET"] + (0..<8).map { RedisArgument("workload:cluster:async:\($0)") })
        sent += 17
        if round % 20 == 0 {
            // Killed connections on one master: reads retry, the next calls reconnect.
            _ = try? blockingSend(client, ["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
            _ = try? await client.send("PING")
            sent += 2
        }
    }
    await client.shutdown()
    return sent
}

func blockingSend(_ client: RedisClient, _ arguments: [RedisArgument]) throws -> RedisReply { try client.send(arguments) }
func blockingPipeline(_ client: RedisClient, _ commands: [[RedisArgument]]) throws -> [RedisReply] { try client.pipeline(commands) }

if case .cluster = (try? RedisConfiguration(url: url))?.topology {
    do {
        let configuration = try RedisConfiguration(url: url)
        let commands = target
        let sent = try blockingAwait { try await clusterWorkload(configuration, target: commands) }
        print("baldur-workload: \(sent) cluster commands")
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("baldur-workload: \(error)\n".utf8))
        exit(1)
    }
}

do {
    var configuration = try RedisConfiguration(url: url)
    configuration.pool.maxConnections = 4
    configuration.pool.timeout = .milliseconds(50)
    var logger = Logger(label: "baldur-workload")
    logger.logLevel = .warning
    let client = try RedisClient(configuration: configuration, logger: logger)
    let admin = try RedisClient(url: url)
    var sent = 0
    let value = (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    var round = 0
    while sent < target {
        round += 1
        let key = RedisArgument("workload:\(round % 50)")
        // Plain commands and binary values.
        for _ in 0..<20 {
            try client.send("SET", key, .bytes(value))
            check(try client.send("GET", key) == .bulk(value), "GET returned another value")
            sent += 2
        }
        // A pipeline with an error reply inside it.
        let replies = try client.pipeline([["DEL", key], ["INCR", key], ["HSET", key, "f", "v"], ["GET", key]])
        check(replies.count == 4, "pipeline reply count")
        sent += 4
        // Nested arrays from a script.
        let nested = try client.send("EVAL", "return {1,{2,{3,{'x'}}},redis.call('PING')}", 0)
        check(nested.array?.count == 3, "nested script reply")
        sent += 1
        // A reply nested deeper than hiredis parses: a protocol error in the
        // middle of an array, whose partial reply is dropped with the connection.
        if round % 5 == 0 {
            do {
                _ = try client.send("EVAL", "return {{{{{{{{{1}}}}}}}}}", 0)
                check(false, "a reply nested 9 deep was accepted")
            } catch {
                check(error.code == .protocolError, "a reply nested 9 deep gave \(error.code), not protocolError")
            }
            sent += 1
        }
        // A server error at the top level.
        do { try client.send("LPUSH", "workload:string", "x"); try client.send("INCR", "workload:list") } catch {}
        try client.send("SET", "workload:string", "text")
        sent += 3
        if round % 10 == 0 {
            // A killed connection: the next read-only command retries, a write reports it.
            if let id = try client.send("CLIENT", "ID").integer {
                try admin.send("CLIENT", "KILL", "ID", RedisArgument(id))
            }
            _ = try? client.send("SET", key, "after-kill")
            sent += 3
        }
        if round % 25 == 0 {
            // A read timeout on a short-timeout client, and pool exhaustion.
            var short = configuration
            short.commandTimeout = .milliseconds(20)
            short.pool.maxConnections = 1
            let stalled = try RedisClient(configuration: short, logger: logger)
            try admin.send("CLIENT", "PAUSE", "60", "WRITE")
            _ = try? stalled.send("SET", key, "paused")
            try stalled.withConnection { _ in _ = try? stalled.send("PING") }
            stalled.close()
            try client.reconnect()
            sent += 4
        }
    }
    client.close()
    let asyncSent = try runAsyncWorkload(configuration: configuration, admin: admin, logger: logger, target: target / 2)
    admin.close()
    let lingering = try RedisClient(configuration: configuration, logger: logger)
    try lingering.ping()
    try blockingAwait { try await lingering.ping() }
    openAtExit = lingering
    print("baldur-workload: \(sent) commands, \(round) rounds; \(asyncSent) async commands")
} catch {
    FileHandle.standardError.write(Data("baldur-workload: \(error)\n".utf8))
    exit(1)
}

/// The async half: the event-loop engine's paths that allocate or free a
/// context, a continuation or a reply: concurrent pipelined calls, cancelled
/// calls whose replies are dropped, killed shared connections, request
/// timeouts, transactions on dedicated connections, a subscription dropped
/// mid-stream, and a graceful shutdown with calls in flight.
func runAsyncWorkload(configuration: RedisConfiguration, admin: RedisClient, logger: Logger, target: Int) throws -> Int {
    try blockingAwait { try await asyncWorkload(configuration: configuration, admin: admin, logger: logger, target: target) }
}

/// Runs `body` in a task and blocks this thread until it ends.
func blockingAwait<R: Sendable>(_ body: sending @escaping () async throws -> R) throws -> R {
    let result = PlainMutex<Result<R, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let outcome: Result<R, any Error>
        do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
        result.withLock { $0 = outcome }
        done.signal()
    }
    done.wait()
    return try result.withLock { $0! }.get()
}

func asyncWorkload(configuration: RedisConfiguration, admin: RedisClient, logger: Logger, target: Int) async throws -> Int {
    let client = try RedisClient(configuration: configuration, logger: logger)
    final class Count: Sendable { let value = Atomic<Int>(0) }
    let count = Count()
    var round = 0
    while count.value.load(ordering: .relaxed) < target {
        round += 1
        // 64 tasks, each reading back only its own keys.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<64 {
                group.addTask {
                    let key = RedisArgument("workload:async:\(task)")
                    for index in 0..<10 {
                        try await client.send("SET", key, RedisArgument("\(task)-\(index)"))
                        check(try await client.send("GET", key).string == "\(task)-\(index)", "async GET returned another task's value")
                    }
                    let replies = try await client.pipeline([["INCR", key], ["GET", key], ["ECHO", "x"]])
                    check(replies.count == 3 && replies[2].string == "x", "async pipeline replies")
                    count.value.add(23, ordering: .relaxed)
                }
            }
            try await group.waitForAll()
        }
        // Cancelled calls: their replies arrive and are dropped.
        let cancelled = (0..<200).map { index in Task { try await client.send("ECHO", RedisArgument("cancelled-\(index)")) } }
        for (index, call) in cancelled.enumerated() where index % 2 == 0 { call.cancel() }
        for call in cancelled { _ = try? await call.value }
        count.value.add(200, ordering: .relaxed)
        // A transaction and a blocking pop on dedicated connections.
        let results = try await client.withConnection { connection in
            try await connection.transaction([["INCR", "workload:async:tx"], ["GET", "workload:async:tx"]])
        }
        check(results?.count == 2, "async transaction results")
        _ = try await client.send("BLPOP", "workload:async:empty", "0.01")
        count.value.add(5, ordering: .relaxed)
        if round % 3 == 0 {
            // Killed shared connections: calls in flight fail, later ones reconnect.
            try await admin.send("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            _ = try? await client.send("PING")
            try await client.ping()
            // A subscription dropped while messages arrive.
            let messages = try await client.subscribe(to: ["workload:channel"])
            try await admin.send("PUBLISH", "workload:channel", "one")
            var iterator = messages.makeAsyncIterator()
            check(try await iterator.next()?.text == "one", "subscription message")
            count.value.add(6, ordering: .relaxed)
        }
        if round % 5 == 0 {
            // Request timeouts: the paused server answers nothing within 20 ms.
            var short = configuration
            short.commandTimeout = .milliseconds(20)
            short.retry.onTimeout = false
            let stalled = try RedisClient(configuration: short, logger: logger)
            try await stalled.ping()
            try await admin.send("CLIENT", "PAUSE", "60", "WRITE")
            _ = try? await stalled.send("SET", "workload:async:paused", "x")
            await stalled.shutdown()
            count.value.add(3, ordering: .relaxed)
        }
    }
    // A graceful shutdown with calls in flight: every one is answered.
    let inFlight = (0..<100).map { index in Task { try await client.send("ECHO", RedisArgument("last-\(index)")) } }
    await client.shutdown()
    for (index, call) in inFlight.enumerated() {
        if let reply = try? await call.value { check(reply.string == "last-\(index)", "a reply crossed during shutdown") }
    }
    return count.value.load(ordering: .relaxed)
}
