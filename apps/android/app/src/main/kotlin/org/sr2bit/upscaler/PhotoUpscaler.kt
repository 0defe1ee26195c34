package org.sr2bit.upscaler

import android.content.ContentResolver
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.BitmapRegionDecoder
import android.graphics.Rect
import android.media.ExifInterface
import android.net.Uri
import android.os.Build
import android.os.SystemClock
import java.io.File
import java.io.InputStream
import org.sr2bit.upscaler.core.Orientation
import org.sr2bit.upscaler.core.PngWriter
import org.sr2bit.upscaler.core.PreviewSampler
import org.sr2bit.upscaler.core.UnreadablePhotoException
import org.sr2bit.upscaler.core.argbToChw
import org.sr2bit.upscaler.core.chwToArgb
import org.sr2bit.upscaler.core.defaultOverlap
import org.sr2bit.upscaler.core.upscaleBands

/** What one upscale produced: the PNG, small before/after previews, sizes and the time spent. */
class Upscaled(val png: File, val before: Bitmap, val after: Bitmap, val width: Int, val height: Int,
               val scale: Int, val tile: Int, val millis: Long)

/**
 * Upscales a picked photo within a fixed memory budget; runs on a worker thread, never the main one.
 *
 * The photo is never decoded whole: BitmapRegionDecoder decodes one band of tile rows at a time, turned upright
 * by its EXIF orientation (core Orientation), and the SR rows go straight into a PNG file (core PngWriter) while
 * a preview of at most [PREVIEW_SIDE] px is sampled from them. Same tile plan and blending as the golden vectors
 * (core upscaleBands). Memory for a 12 MP photo at x4, 64 px tiles: about 89 MB of heap (core streamedBytes)
 * plus the runtime and the decoder's index, under the 400 MB the README states. [runnerFor] opens the runner for
 * the photo's upright size (its tile side may depend on it: ExecuTorchRunner.forPhoto); it is closed here.
 */
class PhotoUpscaler(private val resolver: ContentResolver, private val runnerFor: (w: Int, h: Int) -> TileRunner) {

    fun upscale(uri: Uri, output: File, onTile: (Int, Int) -> Unit): Upscaled {
        val exif = open(uri).use { ExifInterface(it).getAttributeInt(ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL) }
        val decoder = open(uri).use { newRegionDecoder(it) } ?: throw UnreadablePhotoException("no decoder for $uri")
        try {
            val orientation = Orientation(exif, decoder.width, decoder.height)
            val w = orientation.width
            val h = orientation.height
            if (w.toLong() * h > MAX_INPUT_PIXELS) {
                throw UnreadablePhotoException("${w}x$h is over the app's ${MAX_INPUT_PIXELS / 1_000_000} MP limit")
            }
            return runnerFor(w, h).use { runner -> upscaleWith(runner, decoder, orientation, output, onTile) }
        } finally {
            decoder.recycle()
        }
    }

    private fun upscaleWith(runner: TileRunner, decoder: BitmapRegionDecoder, orientation: Orientation, output: File,
                            onTile: (Int, Int) -> Unit): Upscaled {
        val w = orientation.width
        val h = orientation.height
        val scale = runner.scale
        val before = PreviewSampler(w, h, PREVIEW_SIDE)
        val after = PreviewSampler(w * scale, h * scale, PREVIEW_SIDE)
        val options = BitmapFactory.Options().apply { inPreferredConfig = Bitmap.Config.ARGB_8888 }
        val partial = File(output.path + ".part")
        val started = SystemClock.elapsedRealtime()
        PngWriter(partial.outputStream().buffered(1 shl 16), w * scale, h * scale).use { png ->
            upscaleBands(3, h, w, scale, runner.tile, defaultOverlap(runner.tile),
                readBand = { y0, rows ->
                    val r = orientation.rawRect(y0, rows)
                    val region = decoder.decodeRegion(Rect(r[0], r[1], r[2], r[3]), options)
                        ?: throw UnreadablePhotoException("the decoder returned no pixels for rows $y0..${y0 + rows}")
                    val raw = IntArray(region.width * region.height)
                    region.getPixels(raw, 0, region.width, 0, 0, region.width, region.height)
                    region.recycle()
                    val upright = orientation.toDisplay(y0, rows, raw)
                    before.accept(y0, rows, upright)
                    argbToChw(upright, w, rows)
                },
                writeRows = { y0, rows, chw ->
                    val size = 3 * rows * w * scale
                    val argb = chwToArgb(if (chw.size == size) chw else chw.copyOf(size), w * scale, rows)
                    png.writeRows(argb, rows)
                    after.accept(y0, rows, argb)
                },
                onTile = onTile,
                upscaleTile = runner::upscaleTile)
        }
        val millis = SystemClock.elapsedRealtime() - started
        check(partial.renameTo(output)) { "could not rename $partial to $output" }
        return Upscaled(output, before.toBitmap(), after.toBitmap(), w, h, scale, runner.tile, millis)
    }

    private fun open(uri: Uri): InputStream =
        resolver.openInputStream(uri) ?: throw UnreadablePhotoException("the photo provider returned no stream for $uri")

    @Suppress("DEPRECATION")
    private fun newRegionDecoder(stream: InputStream): BitmapRegionDecoder? =
        if (Build.VERSION.SDK_INT >= 31) BitmapRegionDecoder.newInstance(stream) else BitmapRegionDecoder.newInstance(stream, false)

    private fun PreviewSampler.toBitmap(): Bitmap = Bitmap.createBitmap(argb, width, height, Bitmap.Config.ARGB_8888)

    companion object {
        /** Longest side of the before/after previews: 2048 px is 16 MB of ARGB, well under ImageView's 100 MB. */
        const val PREVIEW_SIDE = 2048
        /** 24 MP: the accumulator grows with the width (about 5.5 KB per LR column at x4 and 64 px tiles). */
        const val MAX_INPUT_PIXELS = 24_000_000L
    }
}
