package org.sr2bit.upscaler.core

import java.io.ByteArrayInputStream
import java.io.ByteArrayOutputStream
import java.io.File
import javax.imageio.ImageIO
import kotlin.random.Random
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/**
 * The streamed path the app runs on a photo: band-by-band blending (against the golden vectors and, bit for bit,
 * against the whole-frame upscaleTiled), the row-by-row PNG writer (read back with javax.imageio), EXIF
 * orientation, the preview sampler and the memory arithmetic the README states.
 */
@Suppress("UNCHECKED_CAST")
class StreamingTest {
    private val golden = MiniJson(File(System.getProperty("golden") ?: "../../golden/vectors.json").readText()).parse()
        as Map<String, Any?>

    /** The streamed result as one CHW array, checking that bands stay within a tile and rows arrive in order. */
    private fun streamed(lr: FloatArray, channels: Int, h: Int, w: Int, scale: Int, tile: Int, overlap: Int,
                         upscaleTile: (FloatArray, Tile) -> FloatArray): FloatArray {
        val outW = w * scale
        val outH = h * scale
        val sr = FloatArray(channels * outH * outW)
        var next = 0
        upscaleBands(channels, h, w, scale, tile, overlap,
            readBand = { y0, rows ->
                assertTrue("band of $rows rows for tile $tile", rows <= tile)
                FloatArray(channels * rows * w) { k -> lr[(k / (rows * w) * h + y0 + k % (rows * w) / w) * w + k % w] }
            },
            writeRows = { y0, rows, chw ->
                assertEquals("rows in order", next, y0)
                assertTrue("$rows rows at once", rows <= FLUSH_ROWS)
                next += rows
                for (c in 0 until channels) System.arraycopy(chw, c * rows * outW, sr, (c * outH + y0) * outW, rows * outW)
            },
            upscaleTile = upscaleTile)
        assertEquals("all SR rows written", outH, next)
        return sr
    }

    @Test fun bandsMatchTheGoldenBlend() {
        val blend = golden["blend"] as Map<String, Any?>
        val lrRows = blend["lr"] as List<List<Double>>
        val h = lrRows.size
        val w = lrRows[0].size
        val scale = (blend["scale"] as Double).toInt()
        val lr = lrRows.flatten().map { it.toFloat() }.toFloatArray()
        val sr = streamed(lr, 1, h, w, scale, (blend["tile"] as Double).toInt(), (blend["overlap"] as Double).toInt()) { tile, t ->
            val offset = 0.01f * ((tile[0] * 255f) % 7f)  // pipeline/golden.py's toy upscaler, as in GoldenVectorsTest
            FloatArray(t.height * scale * t.width * scale) { k ->
                tile[k / (t.width * scale) / scale * t.width + k % (t.width * scale) / scale] + offset
            }
        }
        val expected = (blend["sr"] as List<List<Double>>).flatten()
        assertEquals(expected.size, sr.size)
        expected.forEachIndexed { k, e -> assertEquals("sr[$k]", e, sr[k].toDouble(), 1e-6) }
    }

    @Test fun bandsAreBitIdenticalToTheWholeFrame() {
        val random = Random(7)
        for ((h, w, tile) in listOf(Triple(37, 53, 16), Triple(16, 40, 16), Triple(5, 9, 16), Triple(33, 17, 12))) {
            val lr = FloatArray(3 * h * w) { random.nextFloat() }
            val toy = { chw: FloatArray, t: Tile ->  // a tile-dependent, non-linear stand-in for the network
                val n = t.height * t.width
                FloatArray(3 * n * 9) { k ->
                    val c = k / (n * 9)
                    val y = k % (n * 9) / (t.width * 3) / 3
                    val x = k % (t.width * 3) / 3
                    val v = chw[c * n + y * t.width + x]
                    v * v + 0.03f * (t.y0 + 2 * t.x0 % 5)
                }
            }
            val whole = upscaleTiled(lr, 3, h, w, 3, tile, tile / 4, upscaleTile = toy)
            assertArrayEquals("${w}x$h tile $tile", whole, streamed(lr, 3, h, w, 3, tile, tile / 4, toy), 0f)
        }
    }

    @Test fun pngRowsReadBackExactly() {
        val random = Random(3)
        val w = 29
        val h = 17
        val argb = IntArray(w * h) { random.nextInt() or (0xFF shl 24) }
        val bytes = ByteArrayOutputStream()
        PngWriter(bytes, w, h).use { png ->
            png.writeRows(argb.copyOfRange(0, 5 * w), 5)
            png.writeRows(argb.copyOfRange(5 * w, h * w), h - 5)
        }
        val image = ImageIO.read(ByteArrayInputStream(bytes.toByteArray()))
        assertEquals(w, image.width)
        assertEquals(h, image.height)
        assertArrayEquals(argb, image.getRGB(0, 0, w, h, null, 0, w))
        val short = PngWriter(ByteArrayOutputStream(), w, h)
        short.writeRows(argb, 1)
        assertTrue(runCatching { short.close() }.exceptionOrNull() is IllegalStateException)
    }

    @Test fun exifOrientationTurnsStoredPixelsUpright() {
        val raw = intArrayOf(0, 1, 2, 3, 4, 5)  // 3 wide, 2 tall: a b c / d e f
        val expected = mapOf(
            1 to intArrayOf(0, 1, 2, 3, 4, 5), 2 to intArrayOf(2, 1, 0, 5, 4, 3), 3 to intArrayOf(5, 4, 3, 2, 1, 0),
            4 to intArrayOf(3, 4, 5, 0, 1, 2), 5 to intArrayOf(0, 3, 1, 4, 2, 5), 6 to intArrayOf(3, 0, 4, 1, 5, 2),
            7 to intArrayOf(5, 2, 4, 1, 3, 0), 8 to intArrayOf(2, 5, 1, 4, 0, 3))
        for ((exif, display) in expected) {
            val o = Orientation(exif, 3, 2)
            assertEquals("width for $exif", if (exif >= 5) 2 else 3, o.width)
            val whole = o.toDisplay(0, o.height, raw)
            assertArrayEquals("orientation $exif", display, whole)
            for (y0 in 0 until o.height) {  // one display row at a time: decode only its stored rectangle
                val r = o.rawRect(y0, 1)
                val decoded = IntArray((r[2] - r[0]) * (r[3] - r[1])) { k -> raw[(r[1] + k / (r[2] - r[0])) * 3 + r[0] + k % (r[2] - r[0])] }
                assertArrayEquals("orientation $exif row $y0", whole.copyOfRange(y0 * o.width, (y0 + 1) * o.width),
                    o.toDisplay(y0, 1, decoded))
            }
        }
    }

    @Test fun previewSamplesTheStreamedRows() {
        val w = 10
        val h = 7
        val image = IntArray(w * h) { it }
        val sampler = PreviewSampler(w, h, 4)
        assertEquals(4, sampler.width)
        assertEquals(2, sampler.height)
        for (y0 in 0 until h step 3) {
            val rows = minOf(3, h - y0)
            sampler.accept(y0, rows, image.copyOfRange(y0 * w, (y0 + rows) * w))
        }
        val expected = IntArray(8) { k -> (k / 4 * h / 2) * w + k % 4 * w / 4 }
        assertArrayEquals(expected, sampler.argb)
    }

    @Test fun a12MegapixelPhotoFitsTheBudget() {
        val w = 4032
        val h = 3024  // 12.2 MP, a typical phone photo
        val before = wholeFrameBytes(w, h, 4)
        val after = streamedBytes(w, h, 4, 64, 2048)
        assertTrue("whole frame: $before B", before > 4_000_000_000L)
        assertTrue("streamed: $after B", after < 100_000_000L)  // the README's budget is 400 MB with runtime and decoder
        println("12 MP (${w}x$h) at x4: whole frame $before B, streamed $after B")
    }

    @Test fun everyFailureBecomesOneSentence() {
        val cases = mapOf(
            MissingAssetException("model.pte", java.io.FileNotFoundException("model.pte")) to "is not in the app",
            OutOfMemoryError("Failed to allocate") to "ran out of memory",
            UnreadablePhotoException("no decoder") to "could not be read (no decoder)",
            RuntimeException("Failed to load method forward") to "ExecuTorch could not run model.pte (RuntimeException: Failed")
        for ((error, expected) in cases) {
            val sentence = describeFailure(error, "ExecuTorch", "model.pte")
            assertTrue("'$sentence' lacks '$expected'", expected in sentence)
            assertTrue("'$sentence' is not one sentence", sentence.endsWith(".") && '\n' !in sentence)
        }
    }
}
