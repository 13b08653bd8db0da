// baldur-bench: BaldurCache against the wire's limit and its peers, measured
// in the same run against the same server. Run it through scripts/bench.sh,
// which builds it in release mode, starts a private redis-server, builds the
// raw hiredis loop and installs the Python reference.
//
//   baldur-bench --url URL --hiredis-loop PATH --python PATH --python-script PATH
//                [--rounds 3] [--seconds 1] [--rss-ops 1000000] [--spin-wait-us N]
//
// Every rate is the median of the rounds; each round measures a workload and
// its baselines back to back, and every ratio is the median of the rounds'
// ratios. Ratios compare like with like:
//   - raw hiredis C loop: the same command, no pipelining, one connection per
//     thread (the floor of any synchronous hiredis client);
//   - redis-benchmark: same connection count, no pipelining (or -P 100 for
//     100-key bulk calls and pipelines, compared per key);
//   - Python baldur-framework: the same adapter call.

import BaldurCache
import Dispatch
import Foundation
import InMemoryTracing
import Logging
import MetricsTestKit
import Synchronization

// MARK: - Options

func option(_ name: String) -> String? {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

func die(_ message: String) -> Never {
    FileHandle.standardError.write(Data("baldur-bench: \(message)\n".utf8))
    exit(1)
}

guard let url = option("--url") else { die("--url is required") }
// One workload for callgrind or perf, then exit (Profile.swift).
if let profile = option("--profile") { Profile.run(profile, url: url) }
let rounds = Int(option("--rounds") ?? "3") ?? 3
let seconds = Double(option("--seconds") ?? "1") ?? 1
let rssOps = Int(option("--rss-ops") ?? "1000000") ?? 1_000_000
let hiredisLoop = option("--hiredis-loop")
/// `--spin-wait-us N` sets ``RedisConfiguration/Pool/spinWait`` for every adapter but the `spinWait 0` rows.
let defaultSpinWait = option("--spin-wait-us").flatMap(Int64.init).map { Duration.microseconds($0) }
let python = option("--python")
let pythonScript = option("--python-script")
guard case .standalone(.tcp(let host, let port)) = (try? RedisConfiguration(url: url))?.topology else {
    die("--url must be a redis:// TCP URL")
}

let record: JSONValue = ["id": 42, "status": "executing", "started_at": 1732640000.5, "attempt": 3, "tags": ["a", "b"]]
let recordSize = (try? record.jsonString().utf8.count) ?? 87

func log(_ text: String) { FileHandle.standardError.write(Data("\(text)\n".utf8)) }

// MARK: - Measuring

/// A rate and the CPU time it cost: user + system time of the measuring
/// process (ours) or of the baseline's process, per operation.
struct Sample {
    var rate: Double
    var cpuMicrosecondsPerOperation: Double?
    /// Per-call latency percentiles in microseconds, where measured.
    var p50: Double? = nil
    var p99: Double? = nil

    /// The same measurement counted in units of `factor` operations per call (keys of an `mget`).
    func scaled(by factor: Int) -> Sample {
        Sample(rate: rate * Double(factor), cpuMicrosecondsPerOperation: cpuMicrosecondsPerOperation.map { $0 / Double(factor) })
    }
}

/// User + system CPU seconds of this process (`RUSAGE_SELF`) or of its
/// finished children (`RUSAGE_CHILDREN`).
@Sendable func cpuSeconds(_ who: __rusage_who_t) -> Double {
    var usage = rusage()
    getrusage(who, &usage)
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Runs `body` (one call = `unit` operations) on `threads` threads for `seconds`.
func measure(threads: Int = 1, unit: Int = 1, _ body: @Sendable @escaping () throws -> Void) -> Sample {
    for _ in 0..<50 { try? body() }
    let total = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
    let cpuBefore = cpuSeconds(RUSAGE_SELF.rawValue)
    let start = ContinuousClock.now
    let deadline = start + .milliseconds(Int(seconds * 1000))
    runOnThreads(threads) { _ in
        var count = 0
        while ContinuousClock.now < deadline {
            for _ in 0..<20 {
                do { try body() } catch { failures.add(1, ordering: .relaxed) }
                count += 1
            }
        }
        total.add(count, ordering: .relaxed)
    }
    let elapsed = ContinuousClock.now - start
    let cpu = cpuSeconds(RUSAGE_SELF.rawValue) - cpuBefore
    if failures.load(ordering: .relaxed) > 0 { die("\(failures.load(ordering: .relaxed)) calls failed") }
    let secondsElapsed = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let operations = Double(total.load(ordering: .relaxed) * unit)
    return Sample(rate: operations / secondsElapsed, cpuMicrosecondsPerOperation: cpu / operations * 1e6)
}

/// Runs a baseline to completion: its standard output and the CPU seconds it used.
func run(_ executable: String, _ arguments: [String]) -> (output: String, cpuSeconds: Double) {
    let cpuBefore = cpuSeconds(RUSAGE_CHILDREN.rawValue)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.standardError
    do { try process.run() } catch { die("cannot run \(executable): \(error)") }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { die("\(executable) \(arguments.joined(separator: " ")) exited \(process.terminationStatus)") }
    return (String(decoding: data, as: UTF8.self), cpuSeconds(RUSAGE_CHILDREN.rawValue) - cpuBefore)
}

/// redis-benchmark's requests per second for `test` with `clients` connections and pipeline `depth`.
/// `command`, when given, replaces `-t test` with that exact command (its first word must be `test`).
/// `tls`: against the TLS twin instead (`--tls --cacert`), at its port.
/// `clusterPort`: against the cluster with that seed instead (`--cluster`).
func redisBenchmark(
    _ test: String, clients: Int, depth: Int = 1, command: [String] = [], tls: (port: Int, caFile: String)? = nil, clusterPort: Int? = nil
) -> Sample {
    let requests = depth > 1 ? 400_000 : min(8_000 * clients, 200_000)
    let what = command.isEmpty ? ["-t", test] : ["-r", "100"] + command
    var target = tls.map { ["-p", String($0.port), "--tls", "--cacert", $0.caFile] } ?? ["-p", String(port)]
    if let clusterPort { target = ["-p", String(clusterPort), "--cluster"] }
    let (csv, cpu) = run("/usr/bin/env", ["redis-benchmark", "-h", host, "-c", String(clients), "-n", String(requests),
                                   "-P", String(depth), "-d", String(recordSize), "--csv", "-q"] + target + what)
    // The CSV names a -t test by its command and a given command by its whole text.
    let name = command.isEmpty ? test.uppercased() : command.joined(separator: " ")
    for line in csv.split(whereSeparator: \.isNewline) where line.hasPrefix("\"\(name)\"") {
        let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        if fields.count > 1, let rps = Double(fields[1]) {
            // Columns: test, rps, avg, min, p50, p95, p99, max (milliseconds).
            let p50 = fields.count > 6 ? Double(fields[4]).map { $0 * 1000 } : nil
            let p99 = fields.count > 6 ? Double(fields[6]).map { $0 * 1000 } : nil
            return Sample(rate: rps, cpuMicrosecondsPerOperation: cpu / Double(requests) * 1e6, p50: p50, p99: p99)
        }
    }
    die("could not read redis-benchmark output: \(csv)")
}

func hiredisC(_ mode: String, depth: Int = 100, threads: Int = 1) -> Sample? {
    guard let hiredisLoop else { return nil }
    let (text, cpu) = run(hiredisLoop, [host, String(port), mode, String(seconds), String(depth), String(threads)])
    guard let rate = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)), rate > 0 else { return nil }
    return Sample(rate: rate, cpuMicrosecondsPerOperation: cpu / (rate * seconds) * 1e6)
}

/// The Python reference, kept running so each of its measurements sits right next to ours.
final class PythonBaseline: @unchecked Sendable {
    // Used from the main thread only.
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private var buffered = Data()

    private let seconds: Double

    init?(python: String?, script: String?, url: String, seconds: Double) {
        guard let python, let script else { return nil }
        self.seconds = seconds
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script, url]
        process.standardInput = input
        process.standardOutput = output
        do { try process.run() } catch { die("cannot start the Python baseline: \(error)") }
    }

    func rate(_ workload: String) -> Double {
        input.fileHandleForWriting.write(Data("\(workload) \(seconds)\n".utf8))
        while !buffered.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { die("the Python baseline exited") }
            buffered.append(chunk)
        }
        let newline = buffered.firstIndex(of: UInt8(ascii: "\n"))!
        let line = String(decoding: buffered[..<newline], as: UTF8.self)
        buffered.removeSubrange(...newline)
        guard let value = Double(line) else { die("the Python baseline answered '\(line)'") }
        return value
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
}

// MARK: - The adapter under test

let quiet: Logger = {
    var logger = Logger(label: "baldur-bench")
    logger.logLevel = .critical
    return logger
}()

func makeCache(url: String = url, connections: Int, spinWait: Duration? = nil, observability: RedisObservability = .global) -> RedisCacheAdapter {
    do {
        var configuration = try RedisConfiguration(url: url)
        configuration.pool.maxConnections = connections
        if let spinWait = spinWait ?? defaultSpinWait { configuration.pool.spinWait = spinWait }
        let client = try RedisClient(configuration: configuration, logger: quiet, observability: observability)
        return try RedisCacheAdapter(client: client, keyPrefix: "bench:swift:", logger: quiet)
    } catch { die("\(error)") }
}

/// Recording backends (swift-metrics' TestMetrics, swift-distributed-tracing's
/// InMemoryTracer): what metrics and tracing cost when something records them.
let recordingTracer = InMemoryTracer()
let observedSingle = makeCache(connections: 1, observability: RedisObservability(metrics: TestMetrics(), tracer: recordingTracer))

let single = makeCache(connections: 1)
/// The same with the reply spin-wait off: what the client costs when every wait sleeps in read(2).
let singleNoSpin = makeCache(connections: 1, spinWait: .zero)
let pooled4 = makeCache(connections: 4)
let pooled16 = makeCache(connections: 16)
let bulkKeys = (0..<100).map { "k\($0)" }
let bulkValues = Dictionary(uniqueKeysWithValues: bulkKeys.map { ($0, record) })
/// redis-benchmark's form of the adapter's `SET k v EX 60`: 100 keys, a value of the record's size.
let ttlSetCommand = ["SET", "bench:rb:ttl:__rand_int__", String(repeating: "x", count: recordSize), "EX", "60"]
let pipelineCommands: [[RedisArgument]] = (0..<100).map { _ in ["GET", "bench:swift:record"] }
do {
    try single.set("record", record)
    try single.mset(bulkValues)
    try single.set("cas", ["status": "a"] as JSONValue)
} catch { die("setup: \(error)") }

let casFlip = Atomic<Int>(0)

struct Row {
    let name: String
    let unit: String
    let ours: () -> Sample
    var cBaseline: (() -> Sample?)? = nil
    var benchmarkBaseline: (() -> Sample)? = nil
    var pythonName: String? = nil
    /// Ours and redis-benchmark's rates are per key for bulk rows.
    var perKeyFactor: Double = 1
}

let allRows: [Row] = [
    Row(name: "get, 1 connection", unit: "calls", ours: { measure { _ = try single.get("record") } },
        cBaseline: { hiredisC("get") }, benchmarkBaseline: { redisBenchmark("get", clients: 1) }, pythonName: "get"),
    Row(name: "set, 1 connection", unit: "calls", ours: { measure { try single.set("record", record) } },
        cBaseline: { hiredisC("set") }, benchmarkBaseline: { redisBenchmark("set", clients: 1) }, pythonName: "set"),
    Row(name: "get, 1 connection, metrics + tracing recorded", unit: "calls", ours: {
        defer { recordingTracer.clearAll() }
        return measure { _ = try observedSingle.get("record") }
    }, cBaseline: { hiredisC("get") }, benchmarkBaseline: { redisBenchmark("get", clients: 1) }),
    Row(name: "set, 1 connection, metrics + tracing recorded", unit: "calls", ours: {
        defer { recordingTracer.clearAll() }
        return measure { try observedSingle.set("record", record) }
    }, cBaseline: { hiredisC("set") }, benchmarkBaseline: { redisBenchmark("set", clients: 1) }),
    Row(name: "get, 1 connection, spinWait 0", unit: "calls", ours: { measure { _ = try singleNoSpin.get("record") } },
        cBaseline: { hiredisC("get") }, benchmarkBaseline: { redisBenchmark("get", clients: 1) }, pythonName: "get"),
    Row(name: "set, 1 connection, spinWait 0", unit: "calls", ours: { measure { try singleNoSpin.set("record", record) } },
        cBaseline: { hiredisC("set") }, benchmarkBaseline: { redisBenchmark("set", clients: 1) }, pythonName: "set"),
    Row(name: "raw GET through the pool, 4 threads", unit: "calls", ours: {
        measure(threads: 4) { _ = try pooled4.rawClient.send("GET", "bench:swift:record") }
    }, cBaseline: { hiredisC("get", threads: 4) }, benchmarkBaseline: { redisBenchmark("get", clients: 4) }),
    Row(name: "get, 4 threads", unit: "calls", ours: { measure(threads: 4) { _ = try pooled4.get("record") } },
        cBaseline: { hiredisC("get", threads: 4) }, benchmarkBaseline: { redisBenchmark("get", clients: 4) }),
    Row(name: "set, 4 threads", unit: "calls", ours: { measure(threads: 4) { try pooled4.set("record", record) } },
        cBaseline: { hiredisC("set", threads: 4) }, benchmarkBaseline: { redisBenchmark("set", clients: 4) }),
    Row(name: "raw GET through the pool, 16 threads", unit: "calls", ours: {
        measure(threads: 16) { _ = try pooled16.rawClient.send("GET", "bench:swift:record") }
    }, cBaseline: { hiredisC("get", threads: 16) }, benchmarkBaseline: { redisBenchmark("get", clients: 16) }),
    Row(name: "get, 16 threads", unit: "calls", ours: { measure(threads: 16) { _ = try pooled16.get("record") } },
        cBaseline: { hiredisC("get", threads: 16) }, benchmarkBaseline: { redisBenchmark("get", clients: 16) }),
    Row(name: "set, 16 threads", unit: "calls", ours: { measure(threads: 16) { try pooled16.set("record", record) } },
        cBaseline: { hiredisC("set", threads: 16) }, benchmarkBaseline: { redisBenchmark("set", clients: 16) }),
    Row(name: "mget 100 keys", unit: "keys", ours: { measure(unit: 100) { _ = try single.mget(bulkKeys) } },
        benchmarkBaseline: { redisBenchmark("get", clients: 1, depth: 100) }, pythonName: "mget100", perKeyFactor: 100),
    Row(name: "mget 100 missing keys", unit: "keys", ours: { measure(unit: 100) { _ = try single.mget(bulkKeys.map { "missing:" + $0 }) } },
        benchmarkBaseline: { redisBenchmark("get", clients: 1, depth: 100) }, perKeyFactor: 100),
    Row(name: "mset 100 keys", unit: "keys", ours: { measure(unit: 100) { try single.mset(bulkValues) } },
        benchmarkBaseline: { redisBenchmark("set", clients: 1, depth: 100) }, pythonName: "mset100", perKeyFactor: 100),
    // An hour, not a minute: the next round's "mget 100 keys" reads these keys, and must find them.
    Row(name: "mset 100 keys + TTL", unit: "keys", ours: { measure(unit: 100) { try single.mset(bulkValues, ttl: .seconds(3600)) } },
        // The same command the adapter pipelines: SET with EX costs the server more than a plain SET.
        benchmarkBaseline: { redisBenchmark("set", clients: 1, depth: 100, command: ttlSetCommand) }, pythonName: "mset100-ttl", perKeyFactor: 100),
    Row(name: "pipeline of 100 GET", unit: "commands", ours: { measure(unit: 100) { _ = try single.rawClient.pipeline(pipelineCommands) } },
        cBaseline: { hiredisC("pipeline", depth: 100) }, benchmarkBaseline: { redisBenchmark("get", clients: 1, depth: 100) }),
    Row(name: "pushLimit", unit: "calls", ours: { measure { try single.pushLimit("list", record, maxLength: 100, ttl: .seconds(60)) } },
        pythonName: "pushLimit"),
    Row(name: "casDictField", unit: "calls", ours: {
        measure {
            let flip = casFlip.add(1, ordering: .relaxed).newValue % 2 == 1
            _ = try single.casDictField("cas", field: "status", expected: flip ? "a" : "b", newValue: ["status": flip ? "b" : "a"] as JSONValue)
        }
    }, pythonName: "casDictField"),
    Row(name: "incr", unit: "calls", ours: { measure { try single.incr("counter") } },
        benchmarkBaseline: { redisBenchmark("incr", clients: 1) }, pythonName: "incr"),
    Row(name: "lock acquire + release", unit: "pairs", ours: {
        measure {
            let lock = single.getLock("lock", timeout: .seconds(10))
            guard try lock.acquire(blocking: false) else { throw RedisError(.lockNotAcquired, "contended") }
            try lock.release()
        }
    }, pythonName: "lock"),
]

/// `--only TEXT` keeps the rows whose name contains TEXT (for investigating one workload).
let rows = option("--only").map { only in allRows.filter { $0.name.contains(only) } } ?? allRows

// MARK: - Rounds

var ours: [String: [Sample]] = [:]
var cRates: [String: [Sample]] = [:]
var benchmarkRates: [String: [Sample]] = [:]
var pythonRates: [String: [Double]] = [:]
let pythonBaseline = PythonBaseline(python: python, script: pythonScript, url: url, seconds: seconds)

for round in 1...rounds {
    log("round \(round)/\(rounds)")
    // Each workload and its baselines back to back, so drift in the machine's speed hits them alike.
    for row in rows {
        ours[row.name, default: []].append(row.ours())
        if let c = row.cBaseline?() { cRates[row.name, default: []].append(c) }
        if let benchmark = row.benchmarkBaseline?() { benchmarkRates[row.name, default: []].append(benchmark) }
        if let name = row.pythonName, let pythonBaseline { pythonRates[row.name, default: []].append(pythonBaseline.rate(name)) }
    }
}
pythonBaseline?.stop()

// MARK: - The async engine

/// Runs `body` on the cooperative pool and waits for it on this (main) thread.
func blockingAwait<R: Sendable>(_ body: @Sendable @escaping () async -> R) -> R {
    let result = PlainMutex<R?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let value = await body()
        result.withLock { $0 = value }
        done.signal()
    }
    done.wait()
    return result.withLock { $0! }
}

/// `group.addTask`, with `executor` as the task's preference when there is
/// one. Not `addTask(executorPreference: nil)`: that costs every call 12%
/// more instructions (`baldur-bench --profile asyncraw`, callgrind).
extension TaskGroup {
    mutating func addTask(preferring executor: (any TaskExecutor)?, _ body: sending @escaping @isolated(any) () async -> ChildTaskResult) {
        if let executor { addTask(executorPreference: executor, operation: body) } else { addTask(operation: body) }
    }
}

extension ThrowingTaskGroup {
    /// ``TaskGroup/addTask(preferring:_:)`` for a throwing group.
    mutating func addTask(preferring executor: (any TaskExecutor)?, _ body: sending @escaping @isolated(any) () async throws -> ChildTaskResult) {
        if let executor { addTask(executorPreference: executor, operation: body) } else { addTask(operation: body) }
    }
}

/// Runs `body` in `tasks` concurrent tasks for `seconds`: calls per second,
/// client CPU per call, and each call's latency (p50, p99).
/// `preferring`: the tasks run on this executor (`addTask(executorPreference:)`).
func measureAsync(tasks: Int, preferring executor: (any TaskExecutor)? = nil, _ body: @Sendable @escaping () async throws -> Void) -> Sample {
    let measureSeconds = seconds
    return blockingAwait {
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<min(tasks, 256) { group.addTask(preferring: executor) { for _ in 0..<20 { try? await body() } } }
        }
        final class Failures: Sendable { let count = Atomic<Int>(0) }
        let failures = Failures()
        let cpuBefore = cpuSeconds(RUSAGE_SELF.rawValue)
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int(measureSeconds * 1000))
        let latencies = await withTaskGroup(of: [Float].self) { group in
            for _ in 0..<tasks {
                group.addTask(preferring: executor) {
                    var samples: [Float] = []
                    samples.reserveCapacity(4096)
                    var now = ContinuousClock.now
                    while now < deadline {
                        let sent = now
                        do { try await body() } catch { failures.count.add(1, ordering: .relaxed) }
                        now = ContinuousClock.now
                        let elapsed = sent.duration(to: now)
                        samples.append(Float(elapsed.components.seconds) * 1e6 + Float(elapsed.components.attoseconds) / 1e12)
                    }
                    return samples
                }
            }
            return await group.reduce(into: [Float]()) { $0 += $1 }
        }
        let elapsed = ContinuousClock.now - start
        let cpu = cpuSeconds(RUSAGE_SELF.rawValue) - cpuBefore
        if failures.count.load(ordering: .relaxed) > 0 { die("\(failures.count.load(ordering: .relaxed)) async calls failed") }
        let secondsElapsed = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let sorted = latencies.sorted()
        let operations = Double(sorted.count)
        return Sample(
            rate: operations / secondsElapsed, cpuMicrosecondsPerOperation: cpu / operations * 1e6,
            p50: Double(sorted[sorted.count / 2]), p99: Double(sorted[min(sorted.count - 1, sorted.count * 99 / 100)])
        )
    }
}

/// The async rows: raw GET and adapter get at each concurrency against
/// redis-benchmark with as many connections, and its pipelined ceiling.
let asyncConcurrency = option("--async-tasks").map { $0.split(separator: ",").compactMap { Int($0) } } ?? [1, 16, 64, 256, 1024]
let runAsyncRows = option("--only").map { "async".contains($0) || $0.contains("async") } ?? true
let asyncCache = makeCache(connections: 16)
var asyncRaw: [Int: [Sample]] = [:]
var asyncGet: [Int: [Sample]] = [:]
var asyncBenchmark: [Int: [Sample]] = [:]
var syncLatency: [Sample] = []
var syncGetLatency: [Sample] = []
/// One task preferring the event loop's executor: its calls resumed on the loop's thread.
var onLoopRaw: [Sample] = []
var onLoopGet: [Sample] = []
var pipelinedCeiling: [Sample] = []
if runAsyncRows {
    for round in 1...rounds {
        log("async round \(round)/\(rounds)")
        syncLatency.append(measure { _ = try single.rawClient.send("GET", "bench:swift:record") })
        syncGetLatency.append(measure { _ = try single.get("record") })
        let executor = asyncCache.rawClient.eventLoopExecutor
        onLoopRaw.append(measureAsync(tasks: 1, preferring: executor) { _ = try await asyncCache.rawClient.send("GET", "bench:swift:record") })
        onLoopGet.append(measureAsync(tasks: 1, preferring: executor) { _ = try await asyncCache.get("record") })
        pipelinedCeiling.append(redisBenchmark("get", clients: 64, depth: 16))
        for tasks in asyncConcurrency {
            asyncRaw[tasks, default: []].append(measureAsync(tasks: tasks) { _ = try await asyncCache.rawClient.send("GET", "bench:swift:record") })
            asyncGet[tasks, default: []].append(measureAsync(tasks: tasks) { _ = try await asyncCache.get("record") })
            asyncBenchmark[tasks, default: []].append(redisBenchmark("get", clients: tasks))
        }
    }
}

// MARK: - TLS

/// `--tls-url rediss://...`: the same server's twin over TLS (scripts/bench.sh
/// starts one), measured against plain TCP in the same rounds.
let tlsURL = option("--tls-url")
let runTLSRows = tlsURL != nil && (option("--only").map { "tls".contains($0) || $0.contains("tls") } ?? true)
struct TLSComparison {
    let name: String
    let plain: () -> Sample
    let tls: () -> Sample
    /// redis-benchmark's form of the workload: its test and connection count.
    let benchmark: (test: String, clients: Int)
}
var tlsComparisons: [TLSComparison] = []
var tlsPlain: [String: [Sample]] = [:]
var tlsSecure: [String: [Sample]] = [:]
var tlsBenchmarkPlain: [String: [Sample]] = [:]
var tlsBenchmarkSecure: [String: [Sample]] = [:]
if runTLSRows, let tlsURL {
    guard let parsed = try? RedisConfiguration(url: tlsURL), case .standalone(.tcp(_, let tlsPort)) = parsed.topology,
          let caFile = parsed.tls?.caFile else { die("--tls-url must be rediss://HOST:PORT/DB?ssl_ca_certs=FILE") }
    let tlsSingle = makeCache(url: tlsURL, connections: 1)
    let tlsAsync = makeCache(url: tlsURL, connections: 16)
    do { try tlsSingle.set("record", record) } catch { die("TLS setup: \(error)") }
    tlsComparisons = [
        TLSComparison(name: "get, 1 connection", plain: { measure { _ = try single.get("record") } },
                      tls: { measure { _ = try tlsSingle.get("record") } }, benchmark: ("get", 1)),
        TLSComparison(name: "set, 1 connection", plain: { measure { try single.set("record", record) } },
                      tls: { measure { try tlsSingle.set("record", record) } }, benchmark: ("set", 1)),
        TLSComparison(name: "async get, 64 tasks", plain: { measureAsync(tasks: 64) { _ = try await asyncCache.get("record") } },
                      tls: { measureAsync(tasks: 64) { _ = try await tlsAsync.get("record") } }, benchmark: ("get", 64)),
        TLSComparison(name: "async set, 64 tasks", plain: { measureAsync(tasks: 64) { try await asyncCache.set("record", record) } },
                      tls: { measureAsync(tasks: 64) { try await tlsAsync.set("record", record) } }, benchmark: ("set", 64)),
    ]
    for round in 1...rounds {
        log("TLS round \(round)/\(rounds)")
        for comparison in tlsComparisons {
            tlsPlain[comparison.name, default: []].append(comparison.plain())
            tlsSecure[comparison.name, default: []].append(comparison.tls())
            let (test, clients) = comparison.benchmark
            tlsBenchmarkPlain[comparison.name, default: []].append(redisBenchmark(test, clients: clients))
            tlsBenchmarkSecure[comparison.name, default: []].append(redisBenchmark(test, clients: clients, tls: (tlsPort, caFile)))
        }
    }
}

// MARK: - Cluster

/// `--cluster-url redis+cluster://...`: a cluster on the same machine
/// (scripts/bench.sh starts one: three masters, three replicas), measured
/// against the single server in the same rounds.
let clusterURL = option("--cluster-url")
let runClusterRows = clusterURL != nil && (option("--only").map { "cluster".contains($0) || $0.contains("cluster") } ?? true)
struct ClusterComparison {
    let name: String
    let single: () -> Sample
    let cluster: () -> Sample
    /// redis-benchmark's form of the workload, if it has one: its test and connection count.
    let benchmark: (test: String, clients: Int)?
}
var clusterComparisons: [ClusterComparison] = []
var clusterSingle: [String: [Sample]] = [:]
var clusterSamples: [String: [Sample]] = [:]
var clusterBenchmarkSingle: [String: [Sample]] = [:]
var clusterBenchmarkCluster: [String: [Sample]] = [:]
if runClusterRows, let clusterURL {
    guard let parsed = try? RedisConfiguration(url: clusterURL), case .cluster(let seeds) = parsed.topology,
          case .tcp(_, let seedPort) = seeds[0] else { die("--cluster-url must be redis+cluster://HOST:PORT,...") }
    let oneConnection = makeCache(url: clusterURL, connections: 1)
    let clusterAsync = makeCache(url: clusterURL, connections: 16)
    do {
        try oneConnection.set("record", record)
        try oneConnection.mset(bulkValues)
        // The same data on the one server: the "mset 100 keys + TTL" row gave
        // its keys 60 s, long gone by now, and an mget of missing keys
        // decodes nothing (a full run compared 0.6 µs a missing key with 2.2 µs a value).
        try single.set("record", record)
        try single.mset(bulkValues)
    } catch { die("cluster setup: \(error)") }
    clusterComparisons = [
        ClusterComparison(name: "get, 1 connection", single: { measure { _ = try single.get("record") } },
                          cluster: { measure { _ = try oneConnection.get("record") } }, benchmark: ("get", 1)),
        ClusterComparison(name: "set, 1 connection", single: { measure { try single.set("record", record) } },
                          cluster: { measure { try oneConnection.set("record", record) } }, benchmark: ("set", 1)),
        ClusterComparison(name: "async get, 64 tasks", single: { measureAsync(tasks: 64) { _ = try await asyncCache.get("record") } },
                          cluster: { measureAsync(tasks: 64) { _ = try await clusterAsync.get("record") } }, benchmark: ("get", 64)),
        ClusterComparison(name: "mget 100 keys (keys/s), 1 connection", single: { measure(unit: 100) { _ = try single.mget(bulkKeys) } },
                          cluster: { measure(unit: 100) { _ = try oneConnection.mget(bulkKeys) } }, benchmark: nil),
        ClusterComparison(name: "async mget 100 keys (keys/s), 16 tasks",
                          single: { measureAsync(tasks: 16) { _ = try await asyncCache.mget(bulkKeys) }.scaled(by: 100) },
                          cluster: { measureAsync(tasks: 16) { _ = try await clusterAsync.mget(bulkKeys) }.scaled(by: 100) }, benchmark: nil),
    ]
    for round in 1...rounds {
        log("cluster round \(round)/\(rounds)")
        for comparison in clusterComparisons {
            clusterSingle[comparison.name, default: []].append(comparison.single())
            clusterSamples[comparison.name, default: []].append(comparison.cluster())
            if let (test, clients) = comparison.benchmark {
                clusterBenchmarkSingle[comparison.name, default: []].append(redisBenchmark(test, clients: clients))
                clusterBenchmarkCluster[comparison.name, default: []].append(redisBenchmark(test, clients: clients, clusterPort: seedPort))
            }
        }
    }
}

// MARK: - Near cache

/// Hot-key reads and a 90/10 read/write mix, with and without a near cache, same rounds.
let runNearRows = option("--only").map { "near".contains($0) || $0.contains("near") } ?? true
struct NearComparison {
    let name: String
    let plain: () -> Sample
    let near: () -> Sample
}
var nearComparisons: [NearComparison] = []
var nearPlain: [String: [Sample]] = [:]
var nearSamples: [String: [Sample]] = [:]
if runNearRows {
    func nearCache(connections: Int) -> RedisCacheAdapter {
        do {
            var configuration = try RedisConfiguration(url: url)
            configuration.pool.maxConnections = connections
            let cache = try RedisCacheAdapter(client: RedisClient(configuration: configuration), keyPrefix: "bench:swift:", nearCache: NearCacheConfiguration())
            let deadline = ContinuousClock.now + .seconds(10)
            while cache.nearCacheStatistics?.isTracking != true {
                guard ContinuousClock.now < deadline else { die("the near cache did not start tracking") }
                Thread.sleep(forTimeInterval: 0.01)
            }
            return cache
        } catch { die("near cache setup: \(error)") }
    }
    let nearSingle = nearCache(connections: 1)
    let nearAsync = nearCache(connections: 16)
    let nearMixed = nearCache(connections: 16)
    let mixKeys = (0..<10_000).map { "mix:\($0)" }
    do { try pooled16.mset(Dictionary(uniqueKeysWithValues: mixKeys.map { ($0, record) })) } catch { die("near cache setup: \(error)") }
    /// 90% `get`, 10% `set`, of random keys among 10,000.
    @Sendable func mix(_ cache: RedisCacheAdapter) throws {
        let key = mixKeys[Int.random(in: 0..<mixKeys.count)]
        if Int.random(in: 0..<10) == 0 { try cache.set(key, record) } else { _ = try cache.get(key) }
    }
    nearComparisons = [
        NearComparison(name: "hot-key get, 1 thread", plain: { measure { _ = try single.get("record") } },
                       near: { measure { _ = try nearSingle.get("record") } }),
        NearComparison(name: "hot-key get, 2 threads", plain: { measure(threads: 2) { _ = try single.get("record") } },
                       near: { measure(threads: 2) { _ = try nearAsync.get("record") } }),
        NearComparison(name: "hot-key async get, 1 task", plain: { measureAsync(tasks: 1) { _ = try await asyncCache.get("record") } },
                       near: { measureAsync(tasks: 1) { _ = try await nearAsync.get("record") } }),
        NearComparison(name: "hot-key async get, 64 tasks", plain: { measureAsync(tasks: 64) { _ = try await asyncCache.get("record") } },
                       near: { measureAsync(tasks: 64) { _ = try await nearAsync.get("record") } }),
        NearComparison(name: "90/10 get/set over 10,000 keys, 16 threads", plain: { measure(threads: 16) { try mix(pooled16) } },
                       near: { measure(threads: 16) { try mix(nearMixed) } }),
    ]
    for round in 1...rounds {
        log("near cache round \(round)/\(rounds)")
        for comparison in nearComparisons {
            nearPlain[comparison.name, default: []].append(comparison.plain())
            nearSamples[comparison.name, default: []].append(comparison.near())
        }
    }
    if let statistics = nearMixed.nearCacheStatistics {
        log("near cache, 90/10 mix: \(statistics.hits) hits, \(statistics.misses) misses, \(statistics.invalidations) invalidations")
    }
}

// MARK: - Lock handoff latency

/// Latency from a release to the next waiter's acquisition, with `waiters` threads contending.
func handoffLatencies(waiters: Int, handoffs: Int) -> (p50: Double, p99: Double) {
    let cache = makeCache(connections: waiters + 2)
    let name = "handoff:\(waiters)"
    let releasedAt = PlainMutex<ContinuousClock.Instant?>(nil)
    let samples = PlainMutex<[Double]>([])
    let remaining = Atomic<Int>(handoffs)
    runOnThreads(waiters) { _ in
        let lock = cache.getLock(name, timeout: .seconds(10))
        while remaining.load(ordering: .relaxed) > 0 {
            guard (try? lock.acquire(blocking: true, timeout: .seconds(5))) == true else { continue }
            let now = ContinuousClock.now
            if let released = releasedAt.withLock({ $0 }) {
                let gap = released.duration(to: now)
                samples.withLock { $0.append(Double(gap.components.attoseconds) / 1e12 + Double(gap.components.seconds) * 1e6) }
            }
            remaining.subtract(1, ordering: .relaxed)
            Thread.sleep(forTimeInterval: 0.0005)
            releasedAt.withLock { $0 = ContinuousClock.now }
            try? lock.release()
        }
    }
    cache.close()
    let sorted = samples.withLock { $0 }.sorted()
    guard !sorted.isEmpty else { return (.nan, .nan) }
    return (sorted[sorted.count / 2], sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))])
}

log("lock handoff latency")
let handoff = [1, 8, 32].map { waiters in (waiters, handoffLatencies(waiters: max(waiters, 2), handoffs: 300)) }

// MARK: - Resident memory

func residentKiB() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return -1 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }
    return -1
}

log("resident memory over \(rssOps) operations")
let rssCache = pooled4
let perThread = rssOps / 4
func churn(_ count: Int) {
    runOnThreads(4) { thread in
        for index in 0..<count {
            if index % 2 == 0 { try? rssCache.set("rss:\(thread)", record) } else { _ = try? rssCache.get("rss:\(thread)") }
        }
    }
}
churn(50_000)
var rssCheckpoints = [residentKiB()]
for _ in 0..<4 {
    churn(perThread / 4)
    rssCheckpoints.append(residentKiB())
}

// MARK: - Report

func format(_ value: Double) -> String {
    guard value.isFinite else { return "-" }
    return value >= 100 ? String(Int(value.rounded())) : String(format: "%.1f", value)
}

/// The median over rounds of ours / baseline, each round's pair measured back
/// to back, so that the machine's drift between rounds cancels out.
func ratio(_ ours: [Double], _ baselines: [Double]?, divisor: Double = 1) -> String {
    guard let baselines, baselines.count == ours.count, !ours.isEmpty else { return "-" }
    let ratios = zip(ours, baselines).compactMap { mine, base in base > 0 ? mine / divisor / base : nil }
    guard ratios.count == ours.count else { return "-" }
    // The median, and the range over the rounds (each round's ratio is of the same round's rates).
    guard ratios.count > 1, let low = ratios.min(), let high = ratios.max() else { return String(format: "%.2fx", median(ratios)) }
    return String(format: "%.2fx (%.2f-%.2f)", median(ratios), low, high)
}

func cpu(_ samples: [Sample]?) -> String {
    let values = (samples ?? []).compactMap(\.cpuMicrosecondsPerOperation)
    guard !values.isEmpty else { return "-" }
    let value = median(values)
    return String(format: value >= 10 ? "%.0f" : "%.1f", value)
}

print("| workload | BaldurCache | unit/s | vs raw hiredis C | vs redis-benchmark | vs Python baldur | CPU µs per unit: ours / C / redis-benchmark |")
print("|---|---:|---|---:|---:|---:|---|")
for row in rows {
    let mine = (ours[row.name] ?? []).map(\.rate)
    let cpuColumn = "\(cpu(ours[row.name])) / \(cpu(cRates[row.name])) / \(cpu(benchmarkRates[row.name]))"
    // Python's rates are per call; bulk rows compare calls with calls.
    print("| \(row.name) | \(format(median(mine))) | \(row.unit) | \(ratio(mine, cRates[row.name]?.map(\.rate))) "
        + "| \(ratio(mine, benchmarkRates[row.name]?.map(\.rate))) | \(ratio(mine, pythonRates[row.name], divisor: row.perKeyFactor)) | \(cpuColumn) |")
}
for call in ["get", "set"] {
    let plain = (ours["\(call), 1 connection"] ?? []).map(\.rate)
    let recorded = (ours["\(call), 1 connection, metrics + tracing recorded"] ?? []).map(\.rate)
    guard !plain.isEmpty, !recorded.isEmpty else { continue }
    print("")
    print("\(call) with metrics and tracing recorded (TestMetrics, InMemoryTracer) / with no backend: \(ratio(recorded, plain)) (same rounds)")
}
if runAsyncRows {
    func latency(_ samples: [Sample]?, _ path: KeyPath<Sample, Double?>) -> String {
        let values = (samples ?? []).compactMap { $0[keyPath: path] }
        return values.isEmpty ? "-" : format(median(values))
    }
    let ceiling = pipelinedCeiling.map(\.rate)
    print("")
    print("| async, concurrent tasks | raw GET/s | vs redis-benchmark -c C | vs -P 16 ceiling | CPU µs/GET | p50 / p99 µs | redis-benchmark p50 / p99 µs | adapter get/s | get / raw GET |")
    print("|---:|---:|---:|---:|---:|---|---|---:|---:|")
    for tasks in asyncConcurrency {
        let raw = (asyncRaw[tasks] ?? []).map(\.rate)
        let get = (asyncGet[tasks] ?? []).map(\.rate)
        print("| \(tasks) | \(format(median(raw))) | \(ratio(raw, asyncBenchmark[tasks]?.map(\.rate))) | \(ratio(raw, ceiling)) | \(cpu(asyncRaw[tasks])) "
            + "| \(latency(asyncRaw[tasks], \.p50)) / \(latency(asyncRaw[tasks], \.p99)) | \(latency(asyncBenchmark[tasks], \.p50)) / \(latency(asyncBenchmark[tasks], \.p99)) "
            + "| \(format(median(get))) | \(ratio(get, raw)) |")
    }
    let syncRates = syncLatency.map(\.rate)
    let oneTask = (asyncRaw[1] ?? []).map(\.rate)
    print("")
    print("redis-benchmark -c 64 -P 16 (the pipelined ceiling): \(format(median(ceiling))) GET/s. One task, async raw GET / sync raw GET on one connection: \(ratio(oneTask, syncRates)) (same rounds; 1.00x = the same latency).")
    print("")
    print("| one task vs the blocking call on one connection | calls/s | / the blocking call | CPU µs per call: blocking / this | p50 / p99 µs |")
    print("|---|---:|---:|---:|---|")
    let oneTaskRows: [(String, [Sample], [Sample])] = [
        ("blocking raw GET (the baseline)", syncLatency, syncLatency), ("blocking get (the baseline)", syncGetLatency, syncGetLatency),
        ("async raw GET", asyncRaw[1] ?? [], syncLatency), ("async raw GET, on the loop's executor", onLoopRaw, syncLatency),
        ("async get", asyncGet[1] ?? [], syncGetLatency), ("async get, on the loop's executor", onLoopGet, syncGetLatency),
    ]
    for (name, samples, blocking) in oneTaskRows where !samples.isEmpty {
        let p50 = median(samples.compactMap(\.p50)), p99 = median(samples.compactMap(\.p99))
        print("| \(name) | \(format(median(samples.map(\.rate)))) | \(ratio(samples.map(\.rate), blocking.map(\.rate))) | \(cpu(blocking)) / \(cpu(samples)) "
            + "| \(format(p50)) / \(format(p99)) |")
    }
}
if runTLSRows {
    print("")
    print("| over TLS (rediss://) | plain calls/s | TLS calls/s | TLS / plain | redis-benchmark TLS / plain | TLS vs redis-benchmark TLS | CPU µs per call: plain / TLS |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for comparison in tlsComparisons {
        let plain = (tlsPlain[comparison.name] ?? []).map(\.rate)
        let secure = (tlsSecure[comparison.name] ?? []).map(\.rate)
        let benchmarkPlain = (tlsBenchmarkPlain[comparison.name] ?? []).map(\.rate)
        let benchmarkSecure = (tlsBenchmarkSecure[comparison.name] ?? []).map(\.rate)
        print("| \(comparison.name) | \(format(median(plain))) | \(format(median(secure))) | \(ratio(secure, plain)) "
            + "| \(ratio(benchmarkSecure, benchmarkPlain)) | \(ratio(secure, benchmarkSecure)) | \(cpu(tlsPlain[comparison.name])) / \(cpu(tlsSecure[comparison.name])) |")
    }
}
if runClusterRows {
    print("")
    print("| Redis Cluster (3 masters) vs one server | one server /s | cluster /s | cluster / one server | redis-benchmark --cluster / one server | CPU µs per op: one server / cluster |")
    print("|---|---:|---:|---:|---:|---|")
    for comparison in clusterComparisons {
        let one = (clusterSingle[comparison.name] ?? []).map(\.rate)
        let spread = (clusterSamples[comparison.name] ?? []).map(\.rate)
        let benchmark = comparison.benchmark == nil ? "-"
            : ratio((clusterBenchmarkCluster[comparison.name] ?? []).map(\.rate), (clusterBenchmarkSingle[comparison.name] ?? []).map(\.rate))
        print("| \(comparison.name) | \(format(median(one))) | \(format(median(spread))) | \(ratio(spread, one)) | \(benchmark) "
            + "| \(cpu(clusterSingle[comparison.name])) / \(cpu(clusterSamples[comparison.name])) |")
    }
}
if runNearRows {
    print("")
    print("| near cache | without /s | with /s | with / without | CPU µs per call: without / with |")
    print("|---|---:|---:|---:|---|")
    for comparison in nearComparisons {
        let plain = (nearPlain[comparison.name] ?? []).map(\.rate)
        let near = (nearSamples[comparison.name] ?? []).map(\.rate)
        print("| \(comparison.name) | \(format(median(plain))) | \(format(median(near))) | \(ratio(near, plain)) "
            + "| \(cpu(nearPlain[comparison.name])) / \(cpu(nearSamples[comparison.name])) |")
    }
}
print("")
print("| lock handoff | p50 | p99 |")
print("|---|---:|---:|")
for (waiters, latency) in handoff {
    print("| \(waiters) waiter\(waiters == 1 ? "" : "s") | \(format(latency.p50)) µs | \(format(latency.p99)) µs |")
}
print("")
let rssGrowth = rssCheckpoints.last! - rssCheckpoints.first!
print("Resident memory across \(rssOps) get/set operations on 4 threads after warm-up, every quarter: \(rssCheckpoints.map { "\($0)" }.joined(separator: " -> ")) KiB (\(rssGrowth >= 0 ? "+" : "")\(rssGrowth) KiB).")
print("Medians of \(rounds) rounds of \(seconds) s; redis-benchmark with -d \(recordSize); server \(host):\(port).")
