// Platform-free logic (tiling, blending, pixel packing, statistics): plain Kotlin/JVM, unit-tested on any machine.
plugins { id("org.jetbrains.kotlin.jvm") }

dependencies { testImplementation("junit:junit:4.13.2") }

tasks.test { systemProperty("golden", rootProject.file("../golden/vectors.json").path) }
