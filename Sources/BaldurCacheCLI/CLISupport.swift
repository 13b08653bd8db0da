import ArgumentParser
import BaldurCache
import Foundation
import Logging

/// What `baldur-cache --version` prints after its name.
let cliVersion = "0.1.0"

/// The exit statuses of `baldur-cache`, as documented in `--help` and the README.
enum ExitStatus {
    /// Success.
    static let ok: Int32 = 0
    /// The key does not exist (`get`, `ttl`).
    static let notFound: Int32 = 1
    /// Redis could not be reached or answered with an error.
    static let redisError: Int32 = 2
    /// Bad input: a malformed URL, duration or JSON value, a missing `--yes`.
    static let badInput: Int32 = 3
    /// `lock`: the lock could not be acquired within `--wait`.
    static let lockNotAcquired: Int32 = 75
    /// `lock`: the lock was lost while the command ran (the command was sent SIGTERM).
    static let lockLost: Int32 = 76
    /// `lock`: the command could not be started.
    static let commandNotRun: Int32 = 127
}

/// `--url` and `--prefix`, shared by every subcommand.
struct ConnectionOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Redis URL (default: $BALDUR_REDIS_URL, else redis://localhost:6379/0).", valueName: "url"))
    var url: String?

    @Option(help: ArgumentHelp(
        "Key prefix. Without it, the adapter's default dynamic prefix (baldur:, namespaced by BALDUR_NAMESPACE_*), so the CLI sees what a default Python or Swift adapter wrote. Use \"\" for none.",
        valueName: "prefix"))
    var prefix: String?

    /// An adapter for these options; logging stays quiet unless BALDUR_LOG_LEVEL is set.
    func makeCache() throws -> RedisCacheAdapter {
        do {
            var environment = ProcessInfo.processInfo.environment
            if let url { environment["BALDUR_REDIS_URL"] = url }
            let configuration = try RedisConfiguration.fromEnvironment(environment)
            var logger = Logger(label: "baldur-cache")
            logger.logLevel = ProcessInfo.processInfo.environment["BALDUR_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
            return try RedisCacheAdapter(client: RedisClient(configuration: configuration, logger: logger), keyPrefix: prefix, logger: logger)
        } catch {
            throw CLIError(error)
        }
    }
}

/// One line on stderr and an exit status: how every failure ends.
struct CLIError: Error {
    let message: String
    let status: Int32

    init(_ message: String, status: Int32) {
        self.message = message
        self.status = status
    }

    init(_ error: any Error) {
        if let error = error as? CLIError {
            self = error
        } else if let error = error as? RedisError {
            switch error.code {
            case .invalidConfiguration, .invalidArgument, .unsupported, .decoding:
                self.init(error.message, status: ExitStatus.badInput)
            default:
                self.init(error.message, status: ExitStatus.redisError)
            }
        } else {
            self.init("\(error)", status: ExitStatus.redisError)
        }
    }
}

/// Runs a subcommand body, turning every failure into one stderr line and its exit status.
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let exit as ExitCode {
        throw exit
    } catch {
        let failure = CLIError(error)
        FileHandle.standardError.write(Data("baldur-cache: \(failure.message)\n".utf8))
        throw ExitCode(failure.status)
    }
}

/// Prints a JSON value on stdout.
func printJSON(_ value: JSONValue) throws {
    print(try value.jsonString())
}

/// Parses a duration: `500ms`, `30s`, `5m`, `2h`, `1d`, or a plain number of
/// seconds, positive and at most ``RedisConfiguration/longestDuration``
/// (100 years). Anything else is bad input (exit 3), checked before anything
/// is sent.
func parseDuration(_ text: String, option: String) throws -> Duration {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
    var number = text
    var scale = 1.0
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        number = String(text.dropLast(suffix.count))
        scale = factor
        break
    }
    let longest = Double(RedisConfiguration.longestDuration.components.seconds)
    guard let value = Double(number), value.isFinite, value > 0 else {
        throw CLIError("\(option) must be a positive duration such as 500ms, 30s, 5m or 2h, not '\(text)'", status: ExitStatus.badInput)
    }
    let seconds = value * scale
    guard seconds <= longest else {
        throw CLIError("\(option) must be at most 100 years (\(Int64(longest))s), not '\(text)'", status: ExitStatus.badInput)
    }
    return .milliseconds(Int64((seconds * 1000).rounded()))
}

/// Rewrites a command line into the shape ArgumentParser reads, for two
/// things users of `redis-cli` expect:
/// - `--url` and `--prefix` before the subcommand (`baldur-cache --url U get k`)
///   move to just after it;
/// - a value that starts with `-` (`set k -7`) is a value, not an unknown
///   option: such positional values move behind a `--` (only when the line
///   has no `--` of its own; options that take a value read it unconditionally).
enum CommandLineShape {
    /// Options that take a value, so the token after them is never moved.
    static let valued: Set<String> = ["--url", "--prefix", "--ttl", "--wait", "--by", "--cursor", "--count"]
    /// Options that may stand before the subcommand.
    static let global: Set<String> = ["--url", "--prefix"]

    static func normalized(_ arguments: [String]) -> [String] {
        var leading: [String] = []
        var rest = arguments[...]
        while let first = rest.first, let name = first.split(separator: "=", maxSplits: 1).first.map(String.init), global.contains(name) {
            leading.append(first)
            rest = rest.dropFirst()
            if !first.contains("="), let value = rest.first {
                leading.append(value)
                rest = rest.dropFirst()
            }
        }
        var result: [String] = []
        if let subcommand = rest.first {
            result.append(subcommand)
            rest = rest.dropFirst()
        }
        result += leading
        guard !rest.contains("--") else { return result + rest }
        var values: [String] = []
        var index = rest.startIndex
        while index < rest.endIndex {
            let token = rest[index]
            if valued.contains(token), index + 1 < rest.endIndex {
                result += [token, rest[index + 1]]
                index += 2
                continue
            }
            if looksNegative(token) { values.append(token) } else { result.append(token) }
            index += 1
        }
        return values.isEmpty ? result : result + ["--"] + values
    }

    /// `-7`, `-1.5`, `-.5`, `-5s`: a minus sign followed by a digit or a point and a digit.
    static func looksNegative(_ token: String) -> Bool {
        let bytes = Array(token.utf8)
        guard bytes.count >= 2, bytes[0] == UInt8(ascii: "-") else { return false }
        let isDigit = { (byte: UInt8) in (48...57).contains(byte) }
        return isDigit(bytes[1]) || (bytes[1] == UInt8(ascii: ".") && bytes.count > 2 && isDigit(bytes[2]))
    }
}
