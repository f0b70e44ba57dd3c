@echo off
rem Builds luaasio.dll on Windows with CMake.
rem
rem   build.bat            Visual Studio 2019 or later (MSVC), into build-msvc\
rem   build.bat mingw      MinGW-w64 g++ on PATH (MSYS2 mingw64, WinLibs), into build-mingw\
rem
rem Environment:
rem   BOOST_INCLUDE  folder holding boost\asio.hpp, e.g. C:\local\boost_1_74_0
rem                  (Boost 1.74 or later; only the headers are used)
rem   ARCH           MSVC platform, default x64 (Win32 or ARM64 for other
rem                  LuaJIT builds: the DLL must match luajit.exe)
rem
rem The DLL needs only Windows' own DLLs: MSVC links its runtime statically
rem (/MT), MinGW links libstdc++, libgcc and winpthread statically.
rem Put luaasio.dll next to asio.lua, on package.cpath, or name it in
rem LUAASIO_LIB.
setlocal
cd /d "%~dp0"

if "%BOOST_INCLUDE%"=="" (
  echo build.bat: set BOOST_INCLUDE to the folder holding boost\asio.hpp 1>&2
  exit /b 1
)
if not exist "%BOOST_INCLUDE%\boost\asio.hpp" (
  echo build.bat: no boost\asio.hpp in BOOST_INCLUDE=%BOOST_INCLUDE% 1>&2
  exit /b 1
)
where cmake >nul 2>nul
if errorlevel 1 (
  echo build.bat: cmake not found; install it or use a Visual Studio developer prompt 1>&2
  exit /b 1
)
if /i "%~1"=="mingw" goto mingw

if "%ARCH%"=="" set ARCH=x64
cmake -S . -B build-msvc -A %ARCH% -DBOOST_INCLUDE="%BOOST_INCLUDE%" ^
  "-DCMAKE_CXX_FLAGS_RELEASE=/MT /O2 /Ob2 /DNDEBUG"
if errorlevel 1 exit /b 1
cmake --build build-msvc --config Release
if errorlevel 1 exit /b 1
echo build.bat: built build-msvc\Release\luaasio.dll
exit /b 0

:mingw
where g++ >nul 2>nul
if errorlevel 1 (
  echo build.bat: g++ not found; put MinGW-w64's bin folder on PATH 1>&2
  exit /b 1
)
set GEN=MinGW Makefiles
where mingw32-make >nul 2>nul
if errorlevel 1 set GEN=Ninja
cmake -S . -B build-mingw -G "%GEN%" -DCMAKE_BUILD_TYPE=MinSizeRel ^
  -DLUAASIO_STATIC_RUNTIME=ON -DBOOST_INCLUDE="%BOOST_INCLUDE%"
if errorlevel 1 exit /b 1
cmake --build build-mingw
if errorlevel 1 exit /b 1
echo build.bat: built build-mingw\luaasio.dll
exit /b 0
