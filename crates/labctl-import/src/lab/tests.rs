use crate::{NoticeKind, Options, import};

fn lab(src: &str) -> crate::Imported {
    import(
        src.as_bytes(),
        &Options {
            lab_name: "t".into(),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn times_loops_and_shifted_names() {
    // `N.times` counts from 0; `node-#{i + 1}` shifts the index so nodes are 1, 2, 3.
    let imp = lab(r##"
N = 3
BASE = "10.0.0."
Vagrant.configure("2") do |config|
  N.times do |i|
config.vm.define "node-#{i + 1}" do |n|
  n.vm.network :private_network, :ip => BASE + "#{20 + i}"
  n.vm.provider :libvirt do |lv|
    lv.memory = "2048"
    lv.cpus = 2
    lv.nested = true
  end
end
  end
end
"##);
    let t = &imp.lab_toml;
    assert!(t.contains("hostname = \"node-{i}\"\nscale = true\ncpus = 2\nmemory = 2048\nip = \"10.0.0.20\"\nnested_virt = true\n"), "{t}");
    assert!(t.contains("workers = 3\n"), "{t}");
    assert!(!t.contains("start ="), "start is 1, the default: {t}");
    assert!(
        !t.contains("provider ="),
        "libvirt is QEMU, the default: {t}"
    );
    assert_eq!(imp.nodes, 3);
}

#[test]
fn args_keep_constants_and_the_index_symbolic() {
    let imp = lab(r##"
VER = "1.30"
N = 2
Vagrant.configure("2") do |config|
  config.vm.box = "bento/debian-12"
  (1..N).each do |i|
config.vm.define "w#{i}" do |w|
  w.vm.provision "shell", path: "join.sh", args: [VER, "#{i}", "w#{i}.lab", N, "{{x}}"], run: "always"
  w.vm.provision "shell", inline: "echo #{VER}", args: "a b"
end
  end
end
"##);
    let t = &imp.lab_toml;
    assert!(
        t.contains(r#"args = ["{{vars.ver}}", "{{node.index}}", "w{{node.index}}.lab", "{{lab.workers}}", "\\{{x}}"]"#),
        "{t}"
    );
    assert!(t.contains("run = \"always\""), "{t}");
    assert!(t.contains("[vars]\nver = \"1.30\"\n"), "{t}");
    assert!(t.contains("os = \"debian\""), "{t}");
    assert!(
        t.contains("script = \"templates/w-inline.sh\"\nargs = [\"a\", \"b\"]"),
        "{t}"
    );
    assert!(
        imp.notices
            .iter()
            .any(|n| matches!(&n.kind, NoticeKind::ArgsSplit { .. })),
        "{:?}",
        imp.notices
    );
    assert!(
        imp.files
            .iter()
            .any(|f| f.source == crate::FileSource::Inline("echo 1.30".into()))
    );
}

#[test]
fn addresses_that_do_not_grow_by_one_are_noted() {
    let imp = lab(r##"
Vagrant.configure("2") do |config|
  (1..3).each do |i|
config.vm.define "n#{i}" do |n|
  n.vm.network "private_network", ip: "10.0.#{i}.5", netmask: "255.255.0.0"
  n.vm.network "forwarded_port", guest: 80, host: 8080
end
  end
end
"##);
    assert!(
        imp.lab_toml.contains("cidr = \"10.0.0.0/16\""),
        "{}",
        imp.lab_toml
    );
    assert!(imp.lab_toml.contains("count = 3"), "{}", imp.lab_toml);
    let fields: Vec<String> = imp
        .notices
        .iter()
        .filter_map(|n| match &n.kind {
            NoticeKind::DiffersBetweenNodes { field, .. } => Some(field.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(fields, ["ip", "forwarded port"]);
}
