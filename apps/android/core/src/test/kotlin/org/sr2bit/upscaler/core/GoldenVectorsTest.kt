package org.sr2bit.upscaler.core

import java.io.File
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Test

/**
 * The Kotlin core against apps/golden/vectors.json, which the Python pipeline writes and checks too.
 *
 * Every check is a JUnit assertion: Kotlin's `assert` only runs under `java -ea`, which neither JUnitCore nor
 * Gradle's test task sets by default, so a broken edgeWeights or mirrorPad would pass silently.
 */
@Suppress("UNCHECKED_CAST")
class GoldenVectorsTest {
    private val golden = MiniJson(File(System.getProperty("golden") ?: "../../golden/vectors.json").readText()).parse()
        as Map<String, Any?>

    private fun cases(key: String) = golden[key] as List<Map<String, Any?>>
    private fun Any?.int() = (this as Double).toInt()
    private fun flat(value: Any?): List<Double?> =
        if (value is List<*>) value.flatMap { flat(it) } else listOf(value as Double?)

    private fun assertClose(expected: List<Double?>, actual: FloatArray, tolerance: Double, what: String) {
        assertEquals("$what: length", expected.size, actual.size)
        expected.forEachIndexed { k, e -> assertEquals("$what[$k]", e!!, actual[k].toDouble(), tolerance) }
    }

    @Test fun tilePlansMatch() {
        for (case in cases("tile_plans")) {
            val plan = tilePlan(case["h"].int(), case["w"].int(), case["tile"].int(), case["overlap"].int())
            val expected = (case["tiles"] as List<List<Double>>).map { Tile(it[0].toInt(), it[1].toInt(), it[2].toInt(), it[3].toInt()) }
            assertEquals("plan $case", expected, plan)
        }
    }

    @Test fun edgeWeightsMatch() {
        for (case in cases("edge_weights")) {
            val w = edgeWeights(case["length"].int(), case["inner_start"] as Boolean, case["inner_end"] as Boolean, case["overlap_sr"].int())
            assertClose(flat(case["weights"]), w, 0.0, "weights")
        }
    }

    @Test fun pixelPackingMatches() {
        val pack = golden["pack"] as Map<String, Any?>
        val rows = pack["argb"] as List<List<Double>>
        val argb = rows.flatten().map { it.toLong().toInt() }.toIntArray()
        val h = rows.size
        val w = rows[0].size
        assertClose(flat(pack["chw"]), argbToChw(argb, w, h), 0.0, "chw")
        assertClose(flat(pack["nhwc"]), argbToNhwc(argb, w, h), 0.0, "nhwc")
        val unpack = golden["unpack"] as Map<String, Any?>
        val chw = flat(unpack["chw"]).map { it?.toFloat() ?: Float.NaN }.toFloatArray()
        val outRows = unpack["argb"] as List<List<Double>>
        val expected = outRows.flatten().map { it.toLong().toInt() }.toIntArray()
        assertArrayEquals(expected, chwToArgb(chw, outRows[0].size, outRows.size))
    }

    @Test fun blendingMatches() {
        val blend = golden["blend"] as Map<String, Any?>
        val lrRows = blend["lr"] as List<List<Double>>
        val h = lrRows.size
        val w = lrRows[0].size
        val scale = blend["scale"].int()
        val lr = lrRows.flatten().map { it.toFloat() }.toFloatArray()
        // The toy upscaler of pipeline/golden.py: nearest x2 plus 0.01 * ((255 * tile[0][0]) mod 7).
        val sr = upscaleTiled(lr, 1, h, w, scale, blend["tile"].int(), blend["overlap"].int()) { tile, t ->
            val offset = 0.01f * ((tile[0] * 255f) % 7f)
            FloatArray(t.height * scale * t.width * scale) { k ->
                val y = k / (t.width * scale) / scale
                val x = k % (t.width * scale) / scale
                tile[y * t.width + x] + offset
            }
        }
        assertClose(flat(blend["sr"]), sr, 1e-6, "sr")
    }

    @Test fun mirrorPadMatches() {
        for (case in cases("mirror_pad")) {
            val chw = flat(case["chw"]).map { it!!.toFloat() }.toFloatArray()
            val padded = mirrorPad(chw, case["channels"].int(), case["h"].int(), case["w"].int(), case["size"].int())
            assertClose(flat(case["padded"]), padded, 0.0, "padded")
        }
    }

    @Test fun latencyStatsMatch() {
        val stats = golden["latency_stats"] as Map<String, Any?>
        val summary = stats["summary"] as Map<String, Any?>
        val s = summarize((stats["seconds"] as List<Double>).toDoubleArray())
        assertEquals(summary["median_ms"] as Double, s.medianMs, 1e-9)
        assertEquals(summary["p90_ms"] as Double, s.p90Ms, 1e-9)
        assertEquals(summary["min_ms"] as Double, s.minMs, 1e-9)
        assertEquals(summary["mean_ms"] as Double, s.meanMs, 1e-9)
        assertEquals(summary["runs"].int(), s.runs)
    }
}
