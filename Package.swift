// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "BaldurCache",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "BaldurCache", targets: ["BaldurCache"]),
        .executable(name: "baldur-cache", targets: ["baldur-cache"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CHiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .target(
            name: "BaldurCache",
            dependencies: [
                "CHiredis",
                .product(name: "Logging", package: "swift-log"),
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
            dependencies: ["BaldurCache", .product(name: "Logging", package: "swift-log")],
            path: "Sources/BaldurBench"
        ),
        .testTarget(
            name: "BaldurCacheTests",
            dependencies: ["BaldurCache", "CHiredis"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
