import ArgumentParser
import BaldurCache
import Foundation
import Logging

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

/// Parses a duration: `500ms`, `30s`, `5m`, `2h`, `1d`, or a plain number of seconds.
func parseDuration(_ text: String, option: String) throws -> Duration {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
    var number = text
    var scale = 1.0
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        number = String(text.dropLast(suffix.count))
        scale = factor
        break
    }
    guard let value = Double(number), value.isFinite, value > 0 else {
        throw CLIError("\(option) must be a positive duration such as 500ms, 30s, 5m or 2h, not '\(text)'", status: ExitStatus.badInput)
    }
    return .milliseconds(Int64((value * scale * 1000).rounded()))
}
