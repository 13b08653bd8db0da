import ArgumentParser
import BaldurCache
import Dispatch
import Foundation
import Synchronization

/// `baldur-cache lock NAME -- COMMAND ARGS...`: a distributed `flock` for scripts and cron jobs.
struct LockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lock",
        abstract: "Run COMMAND while holding the distributed lock NAME.",
        discussion: """
            The lock (SET NX PX, the same protocol as Python Baldur) is renewed while the command \
            runs and released when it ends. SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to the \
            command. Exit status: the command's own; 75 when the lock was not acquired within --wait; \
            76 when the lock was lost while the command ran (the command is sent SIGTERM); 127 when \
            the command could not be started.

            Example: baldur-cache lock nightly-report --ttl 1m --wait 0s -- ./make-report.sh
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The lock's name, without the prefix.") var name: String
    @Option(parsing: .unconditional, help: "How long the lock lives without renewal (renewed every third of it).") var ttl: String = "30s"
    @Option(parsing: .unconditional, help: "How long to wait for the lock; 0s tries once.") var wait: String = "10s"
    @Flag(help: "Pass a strictly increasing fencing token to the command in BALDUR_FENCING_TOKEN.") var fencing = false
    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else { throw ValidationError("give the command to run after --, e.g. lock NAME -- ./job.sh") }
    }

    func run() throws {
        var status: Int32 = ExitStatus.ok
        try runReportingErrors {
            let lifetime = try parseDuration(ttl, option: "--ttl")
            let patience: Duration = wait == "0" || wait == "0s" ? .zero : try parseDuration(wait, option: "--wait")
            let cache = try connection.makeCache()
            // An unreachable server is exit 2 at once, not a wait that ends in "not acquired" (75).
            try cache.rawClient.ping()
            let lock = cache.getLock(name, timeout: lifetime, blockingTimeout: patience)
            let blocking = patience > .zero
            var token: Int64?
            if fencing {
                token = try lock.acquireWithFencingToken(blocking: blocking)
                guard token != nil else { throw try notAcquired(cache) }
            } else {
                guard try lock.acquire(blocking: blocking) else { throw try notAcquired(cache) }
            }
            status = try runHoldingLock(lock, token: token)
        }
        if status != ExitStatus.ok { throw ExitCode(status) }
    }

    /// 75, unless the server went away during the wait: then its error (exit 2).
    private func notAcquired(_ cache: RedisCacheAdapter) throws -> CLIError {
        try cache.rawClient.ping()
        return CLIError("lock '\(name)' was not acquired within \(wait)", status: ExitStatus.lockNotAcquired)
    }

    private func runHoldingLock(_ lock: DistributedLock, token: Int64?) throws -> Int32 {
        // The signals a supervisor or a terminal sends are forwarded to the command.
        // This process ignores them (so it lives to release the lock); the command
        // gets them at their defaults.
        let forwarded = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]
        for signalNumber in forwarded { signal(signalNumber, SIG_IGN) }
        var environment = ProcessInfo.processInfo.environment
        if let token { environment["BALDUR_FENCING_TOKEN"] = String(token) }
        let pid: pid_t
        do {
            pid = try spawn(command, environment: environment, defaultSignals: forwarded)
        } catch {
            try? lock.release()
            throw error
        }
        let sources = forwarded.map { signalNumber in
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { kill(pid, signalNumber) }
            source.resume()
            return source
        }
        let lost = Atomic<Bool>(false)
        let name = self.name
        // The interval is a third of a TTL that parseDuration checked, so this cannot throw;
        // if it did, the command runs unrenewed and release reports a loss.
        try? lock.startAutoRenewal { _ in
            lost.store(true, ordering: .relaxed)
            FileHandle.standardError.write(Data("baldur-cache: lock '\(name)' was lost while the command ran; sending it SIGTERM\n".utf8))
            kill(pid, SIGTERM)
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        sources.forEach { $0.cancel() }
        if lost.load(ordering: .relaxed) {
            return ExitStatus.lockLost
        }
        do {
            try lock.release()
        } catch where error.code == .lockNotOwned {
            // Someone else held the lock before the command ended: it did not run exclusively.
            FileHandle.standardError.write(Data("baldur-cache: lock '\(name)' was lost while the command ran: \(error.message)\n".utf8))
            return ExitStatus.lockLost
        } catch {
            FileHandle.standardError.write(Data("baldur-cache: releasing lock '\(name)': \(error.message)\n".utf8))
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import as macros.
        let signalled = status & 0x7F
        return signalled == 0 ? (status >> 8) & 0xFF : 128 + signalled
    }

    /// Starts `arguments` (looked up in PATH) with `environment`, the listed
    /// signals reset to their default actions and no signal blocked. Returns the child's pid.
    private func spawn(_ arguments: [String], environment: [String: String], defaultSignals: [Int32]) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var signals = sigset_t()
        sigemptyset(&signals)
        for signalNumber in defaultSignals { sigaddset(&signals, signalNumber) }
        posix_spawnattr_setsigdefault(&attributes, &signals)
        // This process's threads block most signals (Dispatch does); the command must not inherit that mask.
        var unblocked = sigset_t()
        sigemptyset(&unblocked)
        posix_spawnattr_setsigmask(&attributes, &unblocked)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, arguments[0], nil, &attributes, argv, envp)
        guard result == 0 else {
            throw CLIError("could not start \(arguments[0]): \(String(cString: strerror(result)))", status: ExitStatus.commandNotRun)
        }
        return pid
    }
}
