# nodes.rb - the machines of the Vagrant side of labctl's benchmark (issue #7).
#
# run.sh copies this file next to the two Vagrantfiles it generates (one/ and
# three/) and each of them calls VBench.define with the machines it holds. The
# machines are the smoke lab's (labs/smoke/lab.toml): same names, CPUs, memory,
# private addresses and provisioning steps. The steps are the scripts labctl
# itself runs (`labctl render`), one Vagrant shell provisioner per labctl step,
# read from SCRIPTS/<node>/steps.txt ("<file> <args...>" per line).
#
# Everything that keeps traffic on the machine is here or in the box:
#   * management network without NAT (the box sets management_network_mode = "none"),
#   * private network with libvirt__forward_mode "none" and no DHCP,
#   * no synced folder (the box disables it),
# and run.sh runs libvirtd, dnsmasq, QEMU and vagrant in a network namespace
# that has only `lo` and no route.
require "digest"

module VBench
  # name => cpus, memory (MiB), private address: labs/smoke/lab.toml, 2 workers.
  NODES = {
    "m-k8s" => { cpus: 1, memory: 768, ip: "192.168.1.10" },
    "w1-k8s" => { cpus: 1, memory: 512, ip: "192.168.1.101" },
    "w2-k8s" => { cpus: 1, memory: 512, ip: "192.168.1.102" },
  }.freeze

  # The box's own kernel command line (scripts/build-box.sh, CMDLINE), which the
  # per-machine cmd_line below replaces, so it is repeated here.
  BOX_CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet".freeze

  # config:     the Vagrant.configure object
  # names:      machines to define (keys of NODES)
  # prefix:     libvirt domain name prefix (domains are PREFIX + machine name)
  # scripts:    directory with <node>/steps.txt and the rendered step scripts
  # consoles:   directory for the serial console logs (<domain>.console)
  # guest_hint: true sets config.vm.guest = :debian (no guest OS detection)
  def self.define(config, names:, prefix:, scripts:, consoles:, guest_hint:)
    config.vm.box = "labctl/debian-12"
    config.vm.boot_timeout = 600
    config.vm.guest = :debian if guest_hint

    config.vm.provider :libvirt do |lv|
      lv.default_prefix = prefix
      lv.uri = "qemu:///system"
      lv.storage_pool_name = "default"
    end

    names.each do |name|
      node = NODES.fetch(name)
      config.vm.define name do |m|
        m.vm.network :private_network, ip: node[:ip],
                     libvirt__network_name: "vbench-private",
                     libvirt__forward_mode: "none",
                     libvirt__dhcp_enabled: false

        m.vm.provider :libvirt do |lv|
          lv.cpus = node[:cpus]
          lv.memory = node[:memory]
          # Per-machine identity on the kernel command line (direct kernel boot):
          # the box's /etc/machine-id is empty, and two clones with the same id
          # would share one DHCP lease on the management network.
          lv.cmd_line = "#{BOX_CMDLINE} systemd.hostname=#{name} " \
                        "systemd.machine_id=#{Digest::MD5.hexdigest(name)}"
          lv.serial type: "file", source: { path: File.join(consoles, "#{prefix}#{name}.console") }
        end

        File.readlines(File.join(scripts, name, "steps.txt")).each do |line|
          file, *args = line.split
          next if file.nil?

          m.vm.provision "shell", name: "#{name} #{file}",
                                  path: File.join(scripts, name, file),
                                  args: args,
                                  env: { "LABCTL_PUBLISH" => "/var/lib/labctl-smoke/published" }
        end
      end
    end
  end
end
