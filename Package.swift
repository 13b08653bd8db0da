// swift-tools-version:6.0
import PackageDescription

// Linux only: the engine is epoll and eventfd, and hiredis and OpenSSL are
// the system's (Debian: libhiredis-dev, libssl-dev). Elsewhere the build
// stops here, with this one line, rather than on missing headers.
#if !os(Linux)
#error("BaldurCache builds on Linux only (epoll, eventfd, the system hiredis): build and test it in a Linux container")
#endif

let package = Package(
    name: "BaldurCache",
    products: [
        .library(name: "BaldurCache", targets: ["BaldurCache"]),
        .executable(name: "baldur-cache", targets: ["baldur-cache"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CHiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        // epoll and eventfd, which Glibc's Swift module leaves out; Linux only.
        .systemLibrary(name: "CLinuxEvents"),
        // OpenSSL for rediss:// (hiredis 0.14 has no TLS of its own).
        .systemLibrary(
            name: "COpenSSL",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "BaldurCache",
            dependencies: [
                "CHiredis", "CLinuxEvents", "COpenSSL",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),
        .executableTarget(
            name: "baldur-cache",
            dependencies: [
                "BaldurCache",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/BaldurCacheCLI"
        ),
        .executableTarget(
            name: "baldur-workload",
            dependencies: ["BaldurCache", .product(name: "Logging", package: "swift-log")],
            path: "Sources/BaldurWorkload"
        ),
        .executableTarget(
            name: "baldur-test-peer",
            dependencies: ["BaldurCache"],
            path: "Sources/BaldurTestPeer"
        ),
        .executableTarget(
            name: "baldur-bench",
            dependencies: [
                "BaldurCache", .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ],
            path: "Sources/BaldurBench"
        ),
        .testTarget(
            name: "BaldurCacheTests",
            dependencies: [
                "BaldurCache", "CHiredis",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
