# Stand-in for OpenWrt's package.mk (test/openwrt.sh). BuildPackage records
# each package's fields as pkg-NAME-FIELD and adds a target install-NAME
# that runs Package/NAME/install with $(1) = $(DEST); print-VAR prints a
# variable for the lint.
PKG_BUILD_DIR?=/nonexistent/build_dir/$(PKG_NAME)-$(PKG_VERSION)
PKG_INSTALL_DIR?=$(PKG_BUILD_DIR)/ipkg-install
BUILT_PACKAGES:=

PKG_FIELDS:=TITLE SECTION CATEGORY SUBMENU DEPENDS VARIANT DEFAULT_VARIANT CONFLICTS PROVIDES
define BuildPackage
$(foreach f,$(PKG_FIELDS),$(eval $(f):=))$(eval $(Package/$(1)))
$(foreach f,$(PKG_FIELDS),$(eval pkg-$(1)-$(f):=$($(f))))
BUILT_PACKAGES+=$(1)
has-install-$(1):=$(if $(value Package/$(1)/install),yes)
.PHONY: install-$(1)
install-$(1):
	$$(call Package/$(1)/install,$$(DEST))
endef

print-%:
	@:$(info $($*))
