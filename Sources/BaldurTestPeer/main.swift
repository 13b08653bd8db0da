// baldur-test-peer: the other processes of the multi-process lock tests.
//
//   baldur-test-peer get-or-set URL PREFIX KEY THREADS COUNTER
//     THREADS threads call getOrSet(KEY) at once; the factory INCRs COUNTER
//     (so the test can count executions) and sleeps 200 ms. Prints the values seen.
//   baldur-test-peer mutex URL PREFIX LOCK COUNTER DONE THREADS SECTIONS TTL_MS
//     THREADS threads each run SECTIONS critical sections under LOCK: read
//     COUNTER, sleep 2 ms, write COUNTER+1 and INCR DONE in one MULTI/EXEC.
//     A lost update leaves COUNTER below DONE. Prints "completed N".
//   baldur-test-peer black-hole PORT WRITERS DROP_MS
//     Run inside a network namespace of the test's, as root, against a
//     redis-server on 127.0.0.1:PORT there. WRITERS threads each write
//     increasing sequence numbers to a key of their own through one
//     script that records every number it applies and counts every one
//     that arrives lower than the key's (out of order). Midway, iptables
//     drops every packet to PORT for DROP_MS, then the rule is removed and
//     the writers go on for 6 s. Replies are never dropped, so a write that
//     failed reached the server only if it arrived late.
//     Prints "acked A failed F landed L reordered R": L counts failed writes
//     the server applied anyway.
//
// Test support only; not part of the library's surface.

import BaldurCache
import Dispatch
import Foundation
import Synchronization

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("baldur-test-peer: \(message)\n".utf8))
    exit(1)
}

let arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else { fail("usage: baldur-test-peer get-or-set|mutex ...") }

do {
    switch command {
    case "get-or-set":
        guard arguments.count == 6, let threads = Int(arguments[4]) else { fail("get-or-set URL PREFIX KEY THREADS COUNTER") }
        let cache = try RedisCacheAdapter(url: arguments[1], keyPrefix: arguments[2])
        let key = arguments[3], counter = arguments[5]
        let seen = PlainMutex<[String]>([])
        let start = DispatchSemaphore(value: 0)
        let group = DispatchGroup()
        for _ in 0..<threads {
            DispatchQueue.global().async(group: group) {
                start.wait()
                do {
                    let value = try cache.getOrSet(key, as: String.self, ttl: .seconds(60)) {
                        try cache.incr(counter)
                        Thread.sleep(forTimeInterval: 0.2)
                        return "computed-by-\(getpid())"
                    }
                    seen.withLock { $0.append(value) }
                } catch {
                    seen.withLock { $0.append("error: \(error)") }
                }
            }
        }
        for _ in 0..<threads { start.signal() }
        group.wait()
        print(seen.withLock { $0 }.joined(separator: "\n"))

    case "mutex":
        guard arguments.count == 9, let threads = Int(arguments[6]), let sections = Int(arguments[7]), let ttl = Int(arguments[8]) else {
            fail("mutex URL PREFIX LOCK COUNTER DONE THREADS SECTIONS TTL_MS")
        }
        let cache = try RedisCacheAdapter(url: arguments[1], keyPrefix: arguments[2])
        let lockName = arguments[3]
        let counter = RedisArgument(arguments[2] + arguments[4]), done = RedisArgument(arguments[2] + arguments[5])
        let completed = Atomic<Int>(0)
        let failures = PlainMutex<[String]>([])
        runOnThreads(threads) { _ in
            let lock = cache.getLock(lockName, timeout: .milliseconds(ttl), blockingTimeout: .seconds(120))
            for _ in 0..<sections {
                do {
                    try lock.withLock {
                        let current = try cache.rawClient.send("GET", counter).integer ?? 0
                        Thread.sleep(forTimeInterval: 0.002)
                        // In a cluster COUNTER and DONE share a hash tag, and the connection goes to their slot.
                        let replies = try cache.rawClient.withConnection(routedBy: arguments[2] + arguments[4]) { connection in
                            try connection.pipeline([["MULTI"], ["SET", counter, RedisArgument(current + 1)], ["INCR", done], ["EXEC"]])
                        }
                        guard replies.last?.array?.count == 2 else { throw RedisError(.protocolError, "MULTI/EXEC failed: \(replies)") }
                    }
                    completed.add(1, ordering: .relaxed)
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
        }
        let problems = failures.withLock { $0 }
        if !problems.isEmpty { fail("\(problems.count) sections failed: \(problems.prefix(3))") }
        print("completed \(completed.load(ordering: .relaxed))")

    case "black-hole":
        guard arguments.count == 4, let port = Int(arguments[1]), let writers = Int(arguments[2]), let dropMilliseconds = Int(arguments[3]) else {
            fail("black-hole PORT WRITERS DROP_MS")
        }
        try blackHole(port: port, writers: writers, drop: .milliseconds(dropMilliseconds))

    default:
        fail("unknown command \(command)")
    }
} catch {
    fail("\(error)")
}

/// See `black-hole` above.
func blackHole(port: Int, writers: Int, drop: Duration) throws {
    var configuration = RedisConfiguration(address: .tcp(host: "127.0.0.1", port: port))
    configuration.commandTimeout = .milliseconds(500)
    configuration.connectTimeout = .milliseconds(500)
    configuration.retry.onTimeout = false
    configuration.pool.maxConnections = writers
    let client = try RedisClient(configuration: configuration)
    // Stores ARGV[1] at KEYS[1] and records it in the set KEYS[3]; counts at
    // KEYS[2] every arrival older than what is stored.
    let script = """
        local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
        if tonumber(ARGV[1]) < stored then redis.call('INCR', KEYS[2]) end
        redis.call('SET', KEYS[1], ARGV[1])
        redis.call('SADD', KEYS[3], ARGV[1])
        return 1
        """
    let failedWrites = PlainMutex<[[Int]]>(Array(repeating: [], count: writers))
    let acked = Atomic<Int>(0), failed = Atomic<Int>(0)
    let phase = Atomic<Int>(0)  // 0 before the drop, 1 during, 2 after the heal, 3 stop
    func iptables(_ action: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/iptables")
        process.arguments = [action, "INPUT", "-p", "tcp", "--dport", String(port), "-j", "DROP"]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { fail("iptables \(action) failed with \(process.terminationStatus)") }
    }
    let group = DispatchGroup()
    for writer in 0..<writers {
        group.enter()
        Thread {
            defer { group.leave() }
            var sequence = 0
            while phase.load(ordering: .relaxed) < 3 {
                sequence += 1
                do {
                    try client.send("EVAL", RedisArgument(script), 3, RedisArgument("bh:\(writer)"), RedisArgument("bh:\(writer):reordered"),
                                    RedisArgument("bh:\(writer):applied"), RedisArgument(sequence))
                    acked.add(1, ordering: .relaxed)
                } catch {
                    failed.add(1, ordering: .relaxed)
                    failedWrites.withLock { $0[writer].append(sequence) }
                    Thread.sleep(forTimeInterval: 0.005)
                }
            }
        }.start()
    }
    Thread.sleep(forTimeInterval: 0.3)
    try iptables("-A")
    phase.store(1, ordering: .relaxed)
    Thread.sleep(forTimeInterval: Double(drop.components.seconds) + Double(drop.components.attoseconds) / 1e18)
    try iptables("-D")
    phase.store(2, ordering: .relaxed)
    // Long enough for the kernel's retransmissions of anything left unsent to arrive.
    Thread.sleep(forTimeInterval: 6)
    phase.store(3, ordering: .relaxed)
    group.wait()
    var reordered = 0, landed = 0
    for writer in 0..<writers {
        reordered += Int(try client.send("GET", RedisArgument("bh:\(writer):reordered")).string ?? "0") ?? 0
        let failures = failedWrites.withLock { $0[writer] }
        let applied = RedisArgument("bh:\(writer):applied")
        let replies = try client.pipeline(failures.map { ["SISMEMBER", applied, RedisArgument($0)] })
        landed += replies.filter { $0 == .integer(1) }.count
    }
    print("acked \(acked.load(ordering: .relaxed)) failed \(failed.load(ordering: .relaxed)) landed \(landed) reordered \(reordered)")
}
