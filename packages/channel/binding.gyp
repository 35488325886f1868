{
  "targets": [
    {
      "target_name": "channel",
      "sources": ["src/channel.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
