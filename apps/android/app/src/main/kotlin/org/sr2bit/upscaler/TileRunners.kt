package org.sr2bit.upscaler

import android.content.Context
import android.util.Log
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.TensorBuffer
import java.io.File
import java.io.FileNotFoundException
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import org.sr2bit.upscaler.core.MissingAssetException
import org.sr2bit.upscaler.core.Tile
import org.sr2bit.upscaler.core.chooseTile
import org.sr2bit.upscaler.core.methodTileSide
import org.sr2bit.upscaler.core.tileOptions
import org.sr2bit.upscaler.core.mirrorPad

/**
 * One fixed-size artifact from `python -m pipeline build` (tile x tile LR -> (tile*scale)^2 SR, NCHW float32 in
 * [0, 1]); tiles smaller than that are mirror-padded like the pipeline does and cropped back. Not thread-safe:
 * one worker thread owns a runner, and closes it.
 */
abstract class TileRunner(val tile: Int, val scale: Int) : AutoCloseable {
    protected abstract fun runPadded(chw: FloatArray): FloatArray

    fun upscaleTile(chw: FloatArray, t: Tile): FloatArray {
        val out = runPadded(mirrorPad(chw, 3, t.height, t.width, tile))
        val side = tile * scale
        check(out.size == 3 * side * side) {
            "the model returned ${out.size} values; the app expects ${tile}px tiles at x$scale (3 x $side x $side)"
        }
        val th = t.height * scale
        val tw = t.width * scale
        val cropped = FloatArray(3 * th * tw)
        for (c in 0 until 3) for (y in 0 until th) System.arraycopy(out, (c * side + y) * side, cropped, (c * th + y) * tw, tw)
        return cropped
    }
}

/**
 * One method of a .pte: `forward` at the build's --tile, `tile_<n>` for each `pipeline build --tiles` size; the
 * runner owns (and closes) the loaded [module]. [forPhoto] picks the method for a photo.
 */
class ExecuTorchRunner(private val module: Module, private val method: String, tile: Int, scale: Int) :
    TileRunner(tile, scale) {
    private val shape = longArrayOf(1, 3, tile.toLong(), tile.toLong())

    override fun runPadded(chw: FloatArray): FloatArray =
        module.execute(method, EValue.from(Tensor.fromBlob(chw, shape)))[0].toTensor().dataAsFloatArray

    override fun close() = module.close()

    companion object {
        /**
         * Loads the .pte (ExecuTorch needs a real file path: it is copied from assets to filesDir, see [copyAsset],
         * then mapped) and runs a w x h photo through the tile side core chooseTile picks: each method is timed here,
         * on this phone, on one tile after a warm-up run, as `pipeline upscale` uses the build's measurements.
         */
        fun forPhoto(context: Context, asset: String, tile: Int, scale: Int, w: Int, h: Int, maxBytes: Long): ExecuTorchRunner {
            val module = Module.load(copyAsset(context, asset).path, Module.LOAD_MODE_MMAP)
            try {
                val methods = module.getMethods().mapNotNull { m -> methodTileSide(m, tile)?.let { side -> side to m } }.toMap()
                check(methods.isNotEmpty()) { "$asset has no forward or tile_<n> method" }
                val millis = methods.mapValues { (side, method) ->
                    // A runner sharing the module, not closed: closing it would close the module.
                    if (methods.size == 1) 1.0 else timeOneTile(ExecuTorchRunner(module, method, side, scale), side)
                }
                val options = tileOptions(millis, w, h, scale, maxBytes, PhotoUpscaler.PREVIEW_SIDE)
                val chosen = chooseTile(options)
                Log.i(TAG, "${w}x$h photo: tile ${chosen.tile} px of " + options.joinToString("; ") { it.describe() })
                return ExecuTorchRunner(module, methods.getValue(chosen.tile), chosen.tile, scale)
            } catch (e: Throwable) {
                module.close()
                throw e
            }
        }

        /** Milliseconds of one tile through [runner] (a blank one, after one warm-up run that also loads the method). */
        private fun timeOneTile(runner: TileRunner, side: Int): Double {
            val blank = FloatArray(3 * side * side)
            val tile = Tile(0, 0, side, side)
            runner.upscaleTile(blank, tile)
            val start = System.nanoTime()
            runner.upscaleTile(blank, tile)
            return (System.nanoTime() - start) / 1e6
        }

        private const val TAG = "sr2bit"
    }
}

/**
 * LiteRT's CompiledModel on the CPU (XNNPACK); the artifact keeps PyTorch's NCHW input. Its TensorBuffers hold
 * native memory with no finalizer, so close() releases them before the model.
 */
class LiteRtRunner(context: Context, asset: String, tile: Int, scale: Int) : TileRunner(tile, scale) {
    private val model: CompiledModel
    private val inputs: List<TensorBuffer>
    private val outputs: List<TensorBuffer>

    init {
        requireAsset(context, asset)  // LiteRT reports a missing asset as a generic LiteRtException
        model = CompiledModel.create(context.assets, asset, CompiledModel.Options(Accelerator.CPU))
        val created = mutableListOf<TensorBuffer>()
        try {
            inputs = model.createInputBuffers().also { created += it }
            outputs = model.createOutputBuffers()
        } catch (e: Throwable) {
            created.forEach { it.close() }
            model.close()
            throw e
        }
    }

    override fun runPadded(chw: FloatArray): FloatArray {
        inputs[0].writeFloat(chw)
        model.run(inputs, outputs)
        return outputs[0].readFloat()
    }

    override fun close() {
        (inputs + outputs).forEach { it.close() }
        model.close()
    }
}

/**
 * Copies an asset to filesDir once per installed app version, atomically.
 *
 * The copy is named after the asset and the package's lastUpdateTime, so an update that ships a new model is
 * copied again (the old copies are deleted), and it is written to a temporary file renamed into place, so a
 * copy interrupted by a crash or a kill is never loaded.
 */
fun copyAsset(context: Context, asset: String): File {
    val version = context.packageManager.getPackageInfo(context.packageName, 0).lastUpdateTime
    val dir = File(context.filesDir, "models").apply { mkdirs() }
    val target = File(dir, "$version-$asset")
    if (target.isFile) return target
    val partial = File.createTempFile("$asset.", ".part", dir)
    try {
        openAsset(context, asset).use { input -> partial.outputStream().use { input.copyTo(it) } }
        check(partial.renameTo(target)) { "could not rename $partial to $target" }
    } finally {
        partial.delete()
    }
    dir.listFiles()?.filter { it.name.endsWith("-$asset") && it != target }?.forEach { it.delete() }
    return target
}

private fun openAsset(context: Context, asset: String) = try {
    context.assets.open(asset)
} catch (e: FileNotFoundException) {
    throw MissingAssetException(asset, e)
}

private fun requireAsset(context: Context, asset: String) = openAsset(context, asset).close()
