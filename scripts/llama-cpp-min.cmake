# llama-cpp-min.cmake: makes llama-cpp-python's source build (scripts/install-deps.sh) compile only what its
# Python module loads: libllama and libggml (base + cpu). CMake includes this file after every project()
# call (CMAKE_PROJECT_INCLUDE). llama-cpp-python's CMakeLists.txt forces LLAMA_BUILD_COMMON ON before it adds
# llama.cpp, which builds llama-common (chat templates, argument parser, JSON, cpp-httplib): about a third
# of the compile time, and nothing in the Python module uses it. When llama.cpp's own project() has run,
# that setting is turned back off, before llama.cpp reads it; the tools, tests and examples depend on it and
# are off with it.
if(PROJECT_NAME STREQUAL "llama.cpp")
    set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama: build common utils library" FORCE)
endif()
