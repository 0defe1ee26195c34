// Platform-free logic (tiling, blending, pixel packing, PNG rows, EXIF orientation, statistics): plain Kotlin/JVM,
// unit-tested on any machine.
plugins { alias(libs.plugins.kotlin.jvm) }

dependencies { testImplementation(libs.junit) }

tasks.test { systemProperty("golden", rootProject.file("../golden/vectors.json").path) }
