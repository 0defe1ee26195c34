// Latency statistics as the pipeline reports them (targets/latency.py summarize_times), in milliseconds.

public struct LatencySummary: Equatable {
    public let medianMs: Double, p90Ms: Double, minMs: Double, meanMs: Double, runs: Int
}

/// Median (mean of the middle two for an even count), p90 by the nearest-rank rule, min and mean.
public func summarize(seconds: [Double]) -> LatencySummary {
    precondition(!seconds.isEmpty, "no timings")
    let s = seconds.sorted(), n = s.count
    let median = n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
    let rank = max(0, min(n - 1, (9 * n + 9) / 10 - 1))
    return LatencySummary(medianMs: 1e3 * median, p90Ms: 1e3 * s[rank], minMs: 1e3 * s[0],
                          meanMs: 1e3 * s.reduce(0, +) / Double(n), runs: n)
}
