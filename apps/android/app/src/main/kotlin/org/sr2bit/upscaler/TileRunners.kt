package org.sr2bit.upscaler

import android.content.Context
import com.google.ai.edge.litert.CompiledModel
import java.io.File
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import org.sr2bit.upscaler.core.Tile
import org.sr2bit.upscaler.core.mirrorPad

/**
 * One fixed-size artifact from `python -m pipeline build` (tile x tile LR -> (tile*scale)^2 SR, NCHW float32 in
 * [0, 1]); tiles smaller than that are mirror-padded like the pipeline does and cropped back.
 */
abstract class TileRunner(val tile: Int, val scale: Int) : AutoCloseable {
    protected abstract fun runPadded(chw: FloatArray): FloatArray

    fun upscaleTile(chw: FloatArray, t: Tile): FloatArray {
        val out = runPadded(mirrorPad(chw, 3, t.height, t.width, tile))
        val side = tile * scale
        val th = t.height * scale
        val tw = t.width * scale
        val cropped = FloatArray(3 * th * tw)
        for (c in 0 until 3) for (y in 0 until th) System.arraycopy(out, (c * side + y) * side, cropped, (c * th + y) * tw, tw)
        return cropped
    }
}

/** ExecuTorch needs a real file path: the .pte is copied from assets to filesDir once. */
class ExecuTorchRunner(context: Context, asset: String, tile: Int, scale: Int) : TileRunner(tile, scale) {
    private val module = Module.load(copyAsset(context, asset).path)
    private val shape = longArrayOf(1, 3, tile.toLong(), tile.toLong())

    override fun runPadded(chw: FloatArray): FloatArray =
        module.forward(EValue.from(Tensor.fromBlob(chw, shape)))[0].toTensor().dataAsFloatArray

    override fun close() = module.destroy()
}

/** LiteRT's CompiledModel on the CPU (XNNPACK); the artifact keeps PyTorch's NCHW input. */
class LiteRtRunner(context: Context, asset: String, tile: Int, scale: Int) : TileRunner(tile, scale) {
    private val model = CompiledModel.create(context.assets, asset, CompiledModel.Options(com.google.ai.edge.litert.Accelerator.CPU))
    private val inputs = model.createInputBuffers()
    private val outputs = model.createOutputBuffers()

    override fun runPadded(chw: FloatArray): FloatArray {
        inputs[0].writeFloat(chw)
        model.run(inputs, outputs)
        return outputs[0].readFloat()
    }

    override fun close() = model.close()
}

private fun copyAsset(context: Context, asset: String): File {
    val file = File(context.filesDir, asset)
    if (!file.exists()) context.assets.open(asset).use { input -> file.outputStream().use { input.copyTo(it) } }
    return file
}
