// baldur-test-peer: the other processes of the multi-process lock tests.
//
//   baldur-test-peer get-or-set URL PREFIX KEY THREADS COUNTER
//     THREADS threads call getOrSet(KEY) at once; the factory INCRs COUNTER
//     (so the test can count executions) and sleeps 200 ms. Prints the values seen.
//   baldur-test-peer mutex URL PREFIX LOCK COUNTER DONE THREADS SECTIONS TTL_MS
//     THREADS threads each run SECTIONS critical sections under LOCK: read
//     COUNTER, sleep 2 ms, write COUNTER+1 and INCR DONE in one MULTI/EXEC.
//     A lost update leaves COUNTER below DONE. Prints "completed N".
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
        let seen = Mutex<[String]>([])
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
        let failures = Mutex<[String]>([])
        runOnThreads(threads) { _ in
            let lock = cache.getLock(lockName, timeout: .milliseconds(ttl), blockingTimeout: .seconds(120))
            for _ in 0..<sections {
                do {
                    try lock.withLock {
                        let current = try cache.rawClient.send("GET", counter).integer ?? 0
                        Thread.sleep(forTimeInterval: 0.002)
                        let replies = try cache.rawClient.withConnection { connection in
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

    default:
        fail("unknown command \(command)")
    }
} catch {
    fail("\(error)")
}
