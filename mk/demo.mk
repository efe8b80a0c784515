# Demo targets (scripts/demo/): see docs/demo.md.

.PHONY: demo demo-clean demo-vm-per-url

demo: ## as root: boot the example unikernel on a DNS query, inside the sandbox (bin/jitsu-sandbox), and print one causal timeline of client and jitsu
	./scripts/demo/demo.sh

demo-clean: ## remove everything the demos could have left (namespaces, libvirtd, VMs, temp files)
	./scripts/demo/clean.sh

demo-vm-per-url: ## as root: one unikernel per URL of examples/vm-per-url/site, crawled from a client namespace
	./scripts/demo/vm-per-url.sh
