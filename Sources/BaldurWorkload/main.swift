// baldur-workload: a mixed workload for the valgrind leak check
// (scripts/leak-check.sh). It drives every path that allocates or frees a
// hiredis context or reply: plain commands, binary values, pipelines, nested
// script replies, server errors, killed connections, read timeouts, pool
// exhaustion and reconnects. It exits non-zero if the server answers wrongly.
//
// Usage: baldur-workload --url redis://127.0.0.1:PORT/0 [--commands N]
// The server must be private to this run: the workload pauses it briefly.

import BaldurCache
import Foundation
import Logging

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

do {
    var configuration = try RedisConfiguration(url: url)
    configuration.maxConnections = 4
    configuration.poolTimeout = .milliseconds(50)
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
            short.socketTimeout = .milliseconds(20)
            short.maxConnections = 1
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
    admin.close()
    print("baldur-workload: \(sent) commands, \(round) rounds")
} catch {
    FileHandle.standardError.write(Data("baldur-workload: \(error)\n".utf8))
    exit(1)
}
