# Stand-in for OpenWrt's cmake.mk (test/openwrt.sh).
CMAKE_OPTIONS?=
