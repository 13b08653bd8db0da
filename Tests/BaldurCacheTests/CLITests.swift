import BaldurCache
import Foundation
import Testing

/// Runs the `baldur-cache` executable that `scripts/run-tests.sh` built.
struct CLI {
    struct Outcome {
        let status: Int32
        let stdout: String
        let stderr: String
        var json: JSONValue? { try? JSONValue(parsing: stdout.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    let url: String
    let prefix: String?

    init(url: String? = nil, prefix: String? = "bctest:\(UUID().uuidString):") throws {
        self.url = try url ?? TestEnvironment.url()
        self.prefix = prefix
    }

    /// Starts `baldur-cache ARGUMENTS --url URL [--prefix P]` (options go before a `--`).
    func start(_ arguments: [String]) throws -> (Process, Pipe, Pipe) {
        var full = arguments
        var options = ["--url", url]
        if let prefix { options += ["--prefix", prefix] }
        if let separator = full.firstIndex(of: "--") { full.insert(contentsOf: options, at: separator) } else { full += options }
        return try Self.launch(full)
    }

    /// Starts `baldur-cache ARGUMENTS` exactly as given, without BALDUR_REDIS_URL.
    static func launch(_ arguments: [String]) throws -> (Process, Pipe, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try TestEnvironment.value("BALDUR_TEST_CLI"))
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "BALDUR_REDIS_URL")
        process.environment = environment
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        return (process, output, errors)
    }

    func run(_ arguments: String...) throws -> Outcome { try run(arguments) }

    /// Runs `baldur-cache ARGUMENTS` exactly as given (no options added).
    static func runExactly(_ arguments: [String]) throws -> Outcome {
        let (process, output, errors) = try launch(arguments)
        return finish(process, output, errors)
    }

    func run(_ arguments: [String]) throws -> Outcome {
        let (process, output, errors) = try start(arguments)
        return Self.finish(process, output, errors)
    }

    static func finish(_ process: Process, _ output: Pipe, _ errors: Pipe) -> Outcome {
        let stdout = output.fileHandleForReading.readDataToEndOfFile()
        let stderr = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return Outcome(status: status, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }
}

@Suite("baldur-cache command")
struct CLITests {
    @Test("set, get, ttl, incr, keys, scan, del and flush against a real server", .ownThread)
    func dataCommands() throws {
        let cli = try CLI()
        defer { _ = try? cli.run("flush", "--yes") }
        #expect(try cli.run("set", "order", #"{"id":7,"status":"pending","note":"héllo"}"#, "--ttl", "5m").status == 0)
        let got = try cli.run("get", "order")
        #expect(got.status == 0)
        #expect(got.json == ["id": 7, "status": "pending", "note": "héllo"])
        let ttl = try cli.run("ttl", "order")
        #expect((295...300).contains(ttl.json?.doubleValue ?? 0))
        #expect(try cli.run("set", "forever", "1").status == 0)
        #expect(try cli.run("ttl", "forever").json == .null)
        #expect(try cli.run("incr", "hits").json == 1)
        #expect(try cli.run("incr", "hits", "--by", "41").json == 42)
        #expect(try cli.run("incr", "hits", "--by=-2").json == 40)
        #expect(try cli.run("keys", "--json").json == ["forever", "hits", "order"])
        #expect(try cli.run("keys", "h*", "--json").json == ["hits"])
        #expect(try cli.run("keys").stdout == "forever\nhits\norder\n")
        // Page by page: other tests' keys share the server (a page may hold none of ours).
        var scanned: Set<JSONValue> = [], cursor: JSONValue = 0, pages = 0
        repeat {
            let page = try cli.run("scan", "--count", "1000", "--cursor", "\(cursor.intValue ?? 0)")
            #expect(page.status == 0)
            scanned.formUnion(page.json?["keys"]?.arrayValue ?? [])
            cursor = page.json?["cursor"] ?? 0
            pages += 1
        } while cursor != 0 && pages < 100_000
        #expect(cursor == 0)
        #expect(scanned == ["forever", "hits", "order"])
        #expect(try cli.run("del", "order", "missing").json == 1)
        #expect(try cli.run("health").json == ["healthy": true])
        let flushed = try cli.run("flush", "--yes")
        #expect(flushed.json == ["deleted": 2])
        #expect(try cli.run("keys", "--json").json == [])
        #expect(try cli.run("keys").stdout == "")
    }

    @Test("without --prefix the CLI sees what a default adapter wrote", .ownThread)
    func defaultPrefix() throws {
        let name = "bctest:cli:\(UUID().uuidString)"
        let cache = try RedisCacheAdapter(url: TestEnvironment.url())
        defer { _ = try? cache.delete(name); cache.close() }
        try cache.set(name, ["from": "swift"] as JSONValue)
        let cli = try CLI(prefix: nil)
        #expect(try cli.run("get", name).json == ["from": "swift"])
    }

    @Test("missing keys, bad input and an unreachable server each give one clear line and a documented status", .ownThread)
    func failures() throws {
        let cli = try CLI()
        let missing = try cli.run("get", "nope")
        #expect(missing.status == 1)
        #expect(missing.stderr == "baldur-cache: key 'nope' does not exist\n")
        #expect(try cli.run("ttl", "nope").status == 1)

        let notJSON = try cli.run("set", "k", "plain words")
        #expect(notJSON.status == 3)
        #expect(notJSON.stderr.hasPrefix("baldur-cache: the value is not JSON"))
        #expect(notJSON.stderr.split(separator: "\n").count == 1)

        let badTTL = try cli.run("set", "k", "1", "--ttl", "soon")
        #expect(badTTL.status == 3)
        #expect(badTTL.stderr.contains("--ttl must be a positive duration"))

        let noYes = try cli.run("flush")
        #expect(noYes.status == 3)
        #expect(noYes.stderr.contains("--yes"))

        let badURL = try CLI(url: "redis://:hunter2@localhost:99999").run("get", "k")
        #expect(badURL.status == 3)
        #expect(badURL.stderr.contains("bad port '99999'"))
        #expect(!badURL.stderr.contains("hunter2"))
        #expect(badURL.stderr.split(separator: "\n").count == 1)

        let port = try freeLoopbackPort()
        let down = try CLI(url: "redis://127.0.0.1:\(port)").run("get", "k")
        #expect(down.status == 2)
        #expect(down.stderr.contains("Connection refused"))
        #expect(down.stderr.split(separator: "\n").count == 1)
        let unhealthy = try CLI(url: "redis://127.0.0.1:\(port)").run("health")
        #expect(unhealthy.status == 2)

        // A value a third party stored that is not JSON.
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: cli.prefix)
        defer { _ = try? cache.flushAll(); cache.close() }
        try cache.rawClient.send("SET", RedisArgument(cli.prefix! + "raw"), "not json")
        let raw = try cli.run("get", "raw")
        #expect(raw.status == 3)
        #expect(raw.stderr.contains("is not valid JSON"))

        let usage = try cli.run("incr")
        #expect(usage.status == 64)
    }

    @Test("the front door: --version, --url and --prefix in the top-level help, keys one per line, --string, fractional TTLs", .ownThread)
    func frontDoor() throws {
        let version = try CLI.runExactly(["--version"])
        #expect(version.status == 0)
        #expect(version.stdout.hasPrefix("baldur-cache "))
        let help = try CLI.runExactly(["--help"])
        #expect(help.stdout.contains("--url") && help.stdout.contains("--prefix"))
        let cli = try CLI()
        defer { _ = try? cli.run("flush", "--yes") }
        #expect(try cli.run("set", "greeting", "--string", "hello world").status == 0)
        #expect(try cli.run("get", "greeting").json == "hello world")
        #expect(try cli.run("set", "quoted", "--string", #""x""#).status == 0)
        #expect(try cli.run("get", "quoted").json == .string(#""x""#))
        #expect(try cli.run("set", "brief", "1", "--ttl", "1.5s").status == 0)
        let setHelp = try cli.run("set", "--help")
        #expect(!setHelp.stdout.contains("500ms"), "the help gives no example the command refuses")
        let tooShort = try cli.run("set", "brief", "1", "--ttl", "500ms")
        #expect(tooShort.status == 3)
        #expect(tooShort.stderr.contains("at least 1 second"))
        #expect(try cli.run("keys").stdout == "brief\ngreeting\nquoted\n")
    }

    @Test("lock against an unreachable server exits 2 (unreachable) at once, not 75 after its wait", .ownThread)
    func lockAgainstAnUnreachableServer() throws {
        let port = try freeLoopbackPort()
        let outcome = try CLI(url: "redis://127.0.0.1:\(port)").run("lock", "job", "--wait", "10m", "--", "true")
        #expect(outcome.status == 2)
        #expect(outcome.stderr.contains("Connection refused"))
    }

    @Test("--help works on every subcommand", .ownThread)
    func help() throws {
        let cli = try CLI()
        for command in ["get", "set", "del", "ttl", "incr", "keys", "scan", "health", "flush", "lock", "demo"] {
            let outcome = try cli.run(command, "--help")
            #expect(outcome.status == 0, "\(command)")
            #expect(outcome.stdout.contains("USAGE"), "\(command)")
        }
        #expect(try cli.run("--help").stdout.contains("75   lock: not acquired within --wait"))
    }

    @Test("lock runs the command under the lock and exits with its status; fencing tokens grow", .ownThread)
    func lockRunsCommand() throws {
        let cli = try CLI()
        defer { _ = try? cli.run("flush", "--yes") }
        #expect(try cli.run("lock", "job", "--", "sh", "-c", "exit 7").status == 7)
        let first = try cli.run("lock", "job", "--fencing", "--", "sh", "-c", "echo $BALDUR_FENCING_TOKEN")
        let second = try cli.run("lock", "job", "--fencing", "--", "sh", "-c", "echo $BALDUR_FENCING_TOKEN")
        #expect(first.status == 0 && second.status == 0)
        let tokens = [first, second].compactMap { Int($0.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(tokens.count == 2 && tokens[1] > tokens[0])
        #expect(try cli.run("lock", "job", "--", "no-such-command-baldur").status == 127)
        #expect(try cli.run("lock", "job").status == 64)
    }

    @Test("two concurrent lock invocations: the second fails at once with --wait 0s, or waits its turn", .ownThread)
    func lockContention() throws {
        let cli = try CLI()
        defer { _ = try? cli.run("flush", "--yes") }
        let (holder, holderOut, holderErr) = try cli.start(["lock", "shared", "--ttl", "5s", "--", "sh", "-c", "echo holding; sleep 1; echo done"])
        // Wait until the first invocation holds the lock.
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: cli.prefix)
        defer { cache.close() }
        let deadline = ContinuousClock.now + .seconds(10)
        while try !cache.getLock("shared").locked(), ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }

        let refused = try cli.run("lock", "shared", "--wait", "0s", "--", "true")
        #expect(refused.status == 75)
        #expect(refused.stderr == "baldur-cache: lock 'shared' was not acquired within 0s\n")

        let waited = try cli.run("lock", "shared", "--wait", "10s", "--", "sh", "-c", "echo second")
        #expect(waited.status == 0)
        #expect(waited.stdout == "second\n")
        let first = CLI.finish(holder, holderOut, holderErr)
        #expect(first.status == 0)
        #expect(first.stdout == "holding\ndone\n")
        #expect(try !cache.getLock("shared").locked())
    }

    @Test("a signal sent to lock is forwarded to the command, and the lock is released", .ownThread)
    func lockForwardsSignals() throws {
        let cli = try CLI()
        defer { _ = try? cli.run("flush", "--yes") }
        let (process, output, errors) = try cli.start(["lock", "signalled", "--", "sh", "-c", "trap 'echo got TERM; kill $! ; exit 3' TERM; echo ready; sleep 30 & wait"])
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: cli.prefix)
        defer { cache.close() }
        let deadline = ContinuousClock.now + .seconds(10)
        while try !cache.getLock("signalled").locked(), ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
        Thread.sleep(forTimeInterval: 0.3)
        kill(process.processIdentifier, SIGTERM)
        let outcome = CLI.finish(process, output, errors)
        #expect(outcome.status == 3)
        #expect(outcome.stdout == "ready\ngot TERM\n")
        #expect(try !cache.getLock("signalled").locked())
    }

    @Test("durations too large to represent are bad input (exit 3) before anything is sent; the command never runs", .ownThread, arguments: [
        ["set", "t", "1", "--ttl", "1e16s"], ["set", "t", "1", "--ttl", "1e300"], ["set", "t", "1", "--ttl", "inf"],
        ["lock", "L", "--ttl", "1e16s", "--", "touch"], ["lock", "L", "--wait", "1e16s", "--", "touch"], ["lock", "L", "--ttl", "1e11s", "--", "touch"],
    ])
    func hugeDurationsExitThree(arguments: [String]) throws {
        let cli = try CLI()
        defer { _ = try? cli.run("flush", "--yes") }
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("bctest-ran-\(UUID().uuidString)").path
        let outcome = try cli.run(arguments.last == "touch" ? arguments + [marker] : arguments)
        #expect(outcome.status == 3, "\(outcome.stderr)")
        #expect(outcome.stderr.hasPrefix("baldur-cache: --"))
        #expect(!FileManager.default.fileExists(atPath: marker))
        #expect(try cli.run("keys", "--json").json == [])
    }

    @Test("lock exits 76 when the release finds that another holder took the lock while the command ran", .ownThread)
    func lockLostAtReleaseExits76() throws {
        let cli = try CLI()
        defer { _ = try? cli.run("flush", "--yes") }
        let (process, output, errors) = try cli.start(["lock", "stolen", "--ttl", "30s", "--", "sh", "-c", "sleep 1; echo finished"])
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: cli.prefix)
        defer { cache.close() }
        let deadline = ContinuousClock.now + .seconds(10)
        while try !cache.getLock("stolen").locked(), ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
        // Another holder overwrites the key while the command runs; renewal (every 10 s) does not see it first.
        try cache.rawClient.send("SET", RedisArgument(cache.getLock("stolen").key), "someone-else")
        let outcome = CLI.finish(process, output, errors)
        #expect(outcome.status == 76)
        #expect(outcome.stdout == "finished\n")
        #expect(outcome.stderr.contains("lost"))
        #expect(try cache.rawClient.send("GET", RedisArgument(cache.getLock("stolen").key)).string == "someone-else")
    }

    @Test("values that start with '-' are values: set k -7, incr --by -5, and --ttl -5s is bad input (3), not usage (64)", .ownThread)
    func negativeNumbersAreValues() throws {
        let cli = try CLI()
        defer { _ = try? cli.run("flush", "--yes") }
        #expect(try cli.run("set", "k", "-7").status == 0)
        #expect(try cli.run("get", "k").json == -7)
        #expect(try cli.run("set", "f", "-1.5e3").status == 0)
        #expect(try cli.run("get", "f").json == .double(-1500))
        #expect(try cli.run("incr", "c", "--by", "-5").json == -5)
        #expect(try cli.run("incr", "c", "--by", "-5").json == -10)
        let negativeTTL = try cli.run("set", "k", "1", "--ttl", "-5s")
        #expect(negativeTTL.status == 3)
        #expect(negativeTTL.stderr.contains("--ttl must be a positive duration"))
        #expect(try cli.run("lock", "L", "--wait", "-1s", "--", "true").status == 3)
        #expect(try cli.run("get", "k").json == -7)
        // Unknown options are still usage errors.
        #expect(try cli.run("get", "k", "--bogus").status == 64)
    }

    @Test("--url and --prefix may come before the subcommand, as with redis-cli -u", .ownThread)
    func globalOptionsBeforeSubcommand() throws {
        let cli = try CLI()
        defer { _ = try? cli.run("flush", "--yes") }
        let url = try TestEnvironment.url()
        let prefix = try #require(cli.prefix)
        #expect(try CLI.runExactly(["--url", url, "--prefix", prefix, "set", "early", "-3"]).status == 0)
        #expect(try CLI.runExactly(["--url=\(url)", "--prefix=\(prefix)", "get", "early"]).json == -3)
        #expect(try CLI.runExactly(["--prefix", prefix, "--url", url, "incr", "early", "--by", "-2"]).json == -5)
        let locked = try CLI.runExactly(["--url", url, "--prefix", prefix, "lock", "L", "--", "sh", "-c", "echo -n ran"])
        #expect(locked.status == 0)
        #expect(locked.stdout == "ran")
    }
}
