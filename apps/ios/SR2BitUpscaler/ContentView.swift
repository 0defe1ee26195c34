import PhotosUI
import SwiftUI
import UpscalerCore

/// Pick a photo, upscale it tile by tile with the bundled Core ML model, compare before/after previews, share the PNG.
///
/// Inference runs in a detached task (PhotoUpscaler and CoreMLTileUpscaler are `nonisolated`); state changes only
/// on the main actor. Every failure becomes one sentence in the status line.
struct ContentView: View {
    @State private var item: PhotosPickerItem?
    @State private var before: UIImage?
    @State private var after: UIImage?
    @State private var result: URL?
    @State private var status = "Pick a photo"
    @State private var progress = 0.0
    @State private var busy = false

    var body: some View {
        NavigationStack {
            VStack(spacing: 12) {
                HStack {
                    preview(before, label: "before")
                    preview(after, label: "after")
                }
                ProgressView(value: progress)
                Text(status).font(.footnote).monospaced()
                PhotosPicker("Choose photo", selection: $item, matching: .images).disabled(busy)
                if let result { ShareLink(item: result) }
            }
            .padding()
            .navigationTitle("sr2bit upscaler")
            .onChange(of: item) { _, newItem in Task { await load(newItem) } }
        }
    }

    private func preview(_ image: UIImage?, label: String) -> some View {
        VStack {
            if let image { Image(uiImage: image).resizable().scaledToFit() } else { Color.gray.opacity(0.2) }
            Text(label).font(.caption)
        }
    }

    private func load(_ newItem: PhotosPickerItem?) async {
        guard let newItem else { return }
        busy = true
        defer { busy = false }
        before = nil
        after = nil
        result = nil
        progress = 0
        status = "Upscaling…"
        do {
            // The encoded file only (a few MB for 12 MP): PhotoUpscaler decodes it band by band.
            guard let data = try await newItem.loadTransferable(type: Data.self) else {
                throw UpscaleError.unreadablePhoto("the picker returned no data")
            }
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("upscaled.png")
            let up = try await Task.detached(priority: .userInitiated) {
                try await PhotoUpscaler.run(data: data, output: output) { done, total in
                    Task { @MainActor in progress = Double(done) / Double(total) }
                }
            }.value
            before = UIImage(cgImage: up.before)
            after = UIImage(cgImage: up.after)
            result = up.png
            status = String(format: "%.1f s, %dx%d -> %dx%d PNG, %d px tiles", up.seconds, up.width, up.height,
                            up.width * up.scale, up.height * up.scale, up.tile)
        } catch {
            status = (error as? LocalizedError)?.errorDescription ?? "Upscaling failed: \(error.localizedDescription)"
        }
    }
}
