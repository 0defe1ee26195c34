package org.sr2bit.upscaler.core

/** Latency statistics as the pipeline reports them (targets/latency.py summarize_times), in milliseconds. */
data class LatencySummary(val medianMs: Double, val p90Ms: Double, val minMs: Double, val meanMs: Double, val runs: Int)

/** Median (mean of the middle two for an even count), p90 by the nearest-rank rule, min and mean of [seconds]. */
fun summarize(seconds: DoubleArray): LatencySummary {
    require(seconds.isNotEmpty()) { "no timings" }
    val sorted = seconds.sorted()
    val n = sorted.size
    val median = if (n % 2 == 1) sorted[n / 2] else (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    val rank = maxOf(0, minOf(n - 1, (9 * n + 9) / 10 - 1))
    return LatencySummary(1e3 * median, 1e3 * sorted[rank], 1e3 * sorted[0], 1e3 * sorted.average(), n)
}
