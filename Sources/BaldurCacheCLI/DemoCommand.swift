import ArgumentParser
import BaldurCache
import Dispatch
import Foundation
import Synchronization

/// `baldur-cache demo`: what BaldurCache does, in about a minute.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Walk through BaldurCache against a live Redis: TTLs, counters, compare-and-set, bounded lists, locks with fencing tokens, and stampede-safe getOrSet.")

    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        try runReportingErrors {
            let cache = try connection.makeCache()
            let run = "demo:\(UUID().uuidString.prefix(8)):"
            defer { _ = try? cache.mdelete(try cache.keys("\(run)*")) }
            try cache.rawClient.ping()
            say("BaldurCache demo against \(cache.rawClient.configuration); keys under \(cache.keyPrefix.resolve())\(run)*\n")

            // 1. Values with a TTL.
            step(1, "set/get with a TTL", "Values are compact JSON, readable by Python Baldur; the TTL counts down on the server.")
            let order: JSONValue = ["id": 42, "status": "pending", "total": 19.5]
            try cache.set(run + "order", order, ttl: .seconds(3))
            say("  set \(run)order = \(try order.jsonString()) with ttl 3s")
            say("  get -> \(try cache.get(run + "order")?.jsonString() ?? "nil")")
            for _ in 0..<2 {
                say("  lifetime -> \(try cache.lifetime(of: run + "order"))")
                progress("waiting 1.5 s for the TTL to tick")
                Thread.sleep(forTimeInterval: 1.5)
            }
            say("  after 3 s: get -> \(try cache.get(run + "order").map { try $0.jsonString() } ?? "nil (expired)")")

            // 2. Counters.
            step(2, "counters", "INCRBY/DECRBY: atomic across every process sharing the Redis.")
            say("  incr -> \(try cache.incr(run + "hits")), incr by 10 -> \(try cache.incr(run + "hits", by: 10)), decr -> \(try cache.decr(run + "hits"))")

            // 3. Compare-and-set under contention.
            step(3, "casDictField under contention", "8 threads race to move one record from pending to claimed; one Lua script each, so exactly one wins.")
            try cache.set(run + "job", ["status": "pending"] as JSONValue)
            let winners = PlainMutex<[Int]>([])
            runOnThreads(8) { worker in
                let claimed: JSONValue = ["status": "claimed", "by": .int(Int64(worker))]
                if (try? cache.casDictField(run + "job", field: "status", expected: "pending", newValue: claimed)) == true {
                    winners.withLock { $0.append(worker) }
                }
            }
            say("  winners: \(winners.withLock { $0 }) -> record \(try cache.get(run + "job")?.jsonString() ?? "nil")")

            // 4. Bounded lists.
            step(4, "pushLimit keeps the last N", "RPUSH + LTRIM + EXPIRE in one script: a bounded event log.")
            for event in 1...7 {
                let length = try cache.pushLimit(run + "events", ["event": .int(Int64(event))] as JSONValue, maxLength: 3, ttl: .seconds(60))
                say("  push event \(event) -> length before trim \(length)")
            }
            say("  listRange -> \(try JSONValue.array(cache.listRange(run + "events")).jsonString())")

            // 5. Two processes contending for one lock.
            step(5, "a lock shared by two processes, with fencing tokens",
                 "Two `baldur-cache lock` processes want the same lock; the second waits for the first. Each gets a larger fencing token.")
            progress("running two processes that each hold the lock for 0.5 s")
            try contendForLock(lockName: run + "lock")

            // 6. getOrSet.
            step(6, "getOrSet computes once for many callers", "16 threads miss the same cold key at once; a single-flight plus a lock elects one to compute.")
            let runs = Atomic<Int>(0)
            let values = PlainMutex<Set<String>>([])
            progress("16 callers, a factory that takes 0.5 s")
            runOnThreads(16) { _ in
                let value = try? cache.getOrSet(run + "report", as: String.self, ttl: .seconds(60)) {
                    runs.add(1, ordering: .relaxed)
                    Thread.sleep(forTimeInterval: 0.5)
                    return "report computed at \(Date())"
                }
                values.withLock { _ = $0.insert(value ?? "error") }
            }
            say("  the factory ran \(runs.load(ordering: .relaxed)) time(s); all 16 callers got \(values.withLock { $0.count }) distinct value(s)")
            say("\nDone. The demo's keys were removed.")
        }
    }

    private func contendForLock(lockName: String) throws {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).path
        let script = "echo \"  pid $$ holds the lock with fencing token $BALDUR_FENCING_TOKEN\"; sleep 0.5"
        var arguments = ["lock", lockName, "--ttl", "10s", "--wait", "10s", "--fencing"]
        if let url = connection.url { arguments += ["--url", url] }
        if let prefix = connection.prefix { arguments += ["--prefix", prefix] }
        arguments += ["--", "sh", "-c", script]
        let children = try (0..<2).map { _ in
            let child = Process()
            child.executableURL = URL(fileURLWithPath: executable)
            child.arguments = arguments
            try child.run()
            return child
        }
        for child in children {
            child.waitUntilExit()
            guard child.terminationStatus == 0 else {
                throw CLIError("a lock process exited with \(child.terminationStatus)", status: ExitStatus.redisError)
            }
        }
    }

    private func step(_ number: Int, _ title: String, _ explanation: String) {
        say("\n\(number). \(title)\n   \(explanation)")
    }

    private func say(_ text: String) {
        // Unbuffered, so lines interleave correctly with the child processes' output.
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    /// A progress line for anything slower than a second.
    private func progress(_ text: String) {
        say("  … \(text)")
    }
}
