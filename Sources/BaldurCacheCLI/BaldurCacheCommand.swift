import ArgumentParser
import BaldurCache
import Foundation

@main
struct BaldurCacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baldur-cache",
        abstract: "Inspect a Baldur cache on Redis, and run commands under a distributed lock.",
        discussion: """
            Every command takes --url URL (default: $BALDUR_REDIS_URL, else redis://localhost:6379/0) \
            and --prefix PREFIX (default: the adapters' baldur: prefix), before or after the command's name.

            Data goes to stdout as JSON (keys: one per line); errors go to stderr as one line.

            Exit statuses:
              0    success
              1    the key does not exist (get, ttl)
              2    Redis could not be reached or answered with an error
              3    bad input: URL, duration, JSON value, missing --yes
              64   bad command line
              75   lock: not acquired within --wait
              76   lock: lost while the command ran (the command got SIGTERM)
              127  lock: the command could not be started
              other  lock: the command's own exit status (128+N when killed by signal N)
            """,
        version: "baldur-cache \(cliVersion)",
        subcommands: [
            Get.self, SetValue.self, Delete.self, TTL.self, Incr.self, Keys.self, Scan.self,
            Health.self, Flush.self, LockCommand.self, Demo.self,
        ]
    )

    /// Reads the command line in the shape users of `redis-cli` type it
    /// (see ``CommandLineShape``), then runs as ArgumentParser does.
    static func main() {
        main(CommandLineShape.normalized(Array(CommandLine.arguments.dropFirst())))
    }
}

struct Get: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the JSON value of KEY (GET). Exit 1 when it does not exist.")

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The key, without the prefix.") var key: String

    func run() throws {
        try runReportingErrors {
            guard let value = try connection.makeCache().get(key) else {
                throw CLIError("key '\(key)' does not exist", status: ExitStatus.notFound)
            }
            try printJSON(value)
        }
    }
}

struct SetValue: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set", abstract: "Store a JSON value at KEY (SET ... [EX|PX]).")

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The key, without the prefix.") var key: String
    @Argument(help: "The value, as JSON: 42, '\"text\"', '{\"a\":1}' (with --string: any text).") var json: String
    @Option(parsing: .unconditional, help: "Time to live: 30s, 1.5s, 5m, 2h, 1d (at least 1 s; fractions are sent as PX).") var ttl: String?
    @Flag(help: "Store VALUE as a JSON string, as typed: set greeting --string hello.") var string = false

    func run() throws {
        try runReportingErrors {
            let value: JSONValue
            if string {
                value = .string(json)
            } else {
                do { value = try JSONValue(parsing: json) } catch let error as RedisError {
                    throw CLIError("the value is not JSON (\(error.message)); quote strings ('\"text\"') or add --string", status: ExitStatus.badInput)
                }
            }
            let duration = try ttl.map { try parseDuration($0, option: "--ttl") }
            try connection.makeCache().set(key, value, ttl: duration)
            try printJSON(true)
        }
    }
}

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "del", abstract: "Delete keys (DEL); print how many existed.")

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The keys, without the prefix.") var keys: [String]

    func validate() throws {
        guard !keys.isEmpty else { throw ValidationError("name at least one key") }
    }

    func run() throws {
        try runReportingErrors { try printJSON(.int(Int64(try connection.makeCache().mdelete(keys)))) }
    }
}

struct TTL: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the seconds KEY has left (PTTL, to the millisecond), null when it never expires. Exit 1 when it does not exist.")

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The key, without the prefix.") var key: String

    func run() throws {
        try runReportingErrors {
            switch try connection.makeCache().lifetime(of: key) {
            case .missing: throw CLIError("key '\(key)' does not exist", status: ExitStatus.notFound)
            case .persistent: try printJSON(.null)
            case .expires(let left):
                let (seconds, attoseconds) = left.components
                try printJSON(.double(Double(seconds) + Double(attoseconds / 1_000_000_000_000_000) / 1000))
            }
        }
    }
}

struct Incr: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Add to the counter at KEY (INCRBY) and print the new value.")

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The key, without the prefix.") var key: String
    @Option(parsing: .unconditional, help: "The amount to add (negative subtracts).") var by: Int64 = 1

    func run() throws {
        try runReportingErrors { try printJSON(.int(try connection.makeCache().incr(key, by: by))) }
    }
}

struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print every key matching PATTERN, without the prefix, one per line, sorted (a full SCAN, never KEYS).")

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "A glob pattern.") var pattern: String = "*"
    @Flag(help: "Print one JSON array instead (for keys holding newlines).") var json = false

    func run() throws {
        try runReportingErrors {
            let keys = try connection.makeCache().keys(pattern).sorted()
            if json { try printJSON(.array(keys.map(JSONValue.string))) } else { keys.forEach { print($0) } }
        }
    }
}

struct Scan: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print one page of keys matching PATTERN (SCAN) and the cursor for the next; cursor 0 means done.")

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "A glob pattern.") var pattern: String = "*"
    @Option(help: "The cursor a previous scan printed.") var cursor: UInt64 = 0
    @Option(help: "About how many keys to look at.") var count: Int = 100

    func run() throws {
        try runReportingErrors {
            let page = try connection.makeCache().scan(pattern, count: count, cursor: cursor)
            try printJSON(["cursor": .int(Int64(bitPattern: page.cursor)), "keys": .array(page.keys.map(JSONValue.string))])
        }
    }
}

struct Health: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that Redis answers (PING). Exit 2 when it does not.")

    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        try runReportingErrors {
            let cache = try connection.makeCache()
            do {
                try cache.rawClient.ping()
            } catch let error as RedisError {
                throw CLIError("unhealthy: \(error.message)", status: ExitStatus.redisError)
            }
            try printJSON(["healthy": true])
        }
    }
}

struct Flush: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete every key under the prefix (SCAN + DEL, never FLUSHDB). Needs --yes.")

    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Confirm the deletion.") var yes = false

    func run() throws {
        try runReportingErrors {
            guard yes else {
                throw CLIError("flush deletes every key under the prefix; add --yes to confirm", status: ExitStatus.badInput)
            }
            try printJSON(["deleted": .int(Int64(try connection.makeCache().flushAll()))])
        }
    }
}
