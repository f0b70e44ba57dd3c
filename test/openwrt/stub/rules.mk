# Stand-in for OpenWrt's rules.mk (test/openwrt.sh): only what
# openwrt/Makefile uses, with OpenWrt's meanings.
INSTALL_DIR:=install -d -m0755
INSTALL_BIN:=install -m0755
INSTALL_DATA:=install -m0644
CP:=cp -fpR
STAGING_DIR?=/nonexistent/staging_dir/target
BUILD_VARIANT?=
