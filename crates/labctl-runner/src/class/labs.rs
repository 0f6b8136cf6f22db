//! Each student's lab: the class's lab with its name, provider, URI and ports moved by the
//! placement's slot, written under `.labctl/labs/<student>/`; hosts' capacities; the plan.

use super::*;

/// The class's lab as every student gets it (class `workers` applied), and its memory.
pub(super) fn base_lab(class: &Class, opts: &ClassOptions) -> Result<(Lab, u64), ClassError> {
    let mut ov = opts.overrides;
    ov.workers = class.workers.or(ov.workers);
    let lab = labctl_spec::load(&class.lab_dir.join("lab.toml"), ov)?;
    let need = lab.nodes.iter().map(|n| u64::from(n.memory_mb)).sum();
    Ok((lab, need))
}

/// The memory of every host: class.toml's, else recorded, else measured (and recorded).
pub(super) fn capacities(
    class: &Class,
    st: &mut ClassState,
    ops: &dyn LabOps,
) -> Result<Vec<HostCapacity>, ClassError> {
    let mut out = Vec::new();
    for h in &class.hosts {
        let cap = match (h.memory_mb, st.measured_mb.get(&h.name)) {
            (Some(m), _) => m,
            (None, Some(m)) => *m,
            (None, None) => {
                let m = ops.measure(h).map_err(|reason| ClassError::Capacity {
                    host: h.name.clone(),
                    reason,
                })?;
                st.measured_mb.insert(h.name.clone(), m);
                m
            }
        };
        out.push(HostCapacity {
            name: h.name.clone(),
            capacity_mb: cap,
        });
    }
    Ok(out)
}

/// Host ports of a lab: every node's SSH port and forwarded host ports.
pub(super) fn lab_ports(lab: &Lab) -> Vec<u16> {
    lab.nodes
        .iter()
        .flat_map(|n| std::iter::once(n.ssh_port).chain(n.forwards.iter().map(|f| f.host)))
        .collect()
}

/// The text of a student's lab.toml: the class's lab with its name, provider, paths made
/// absolute, and host ports moved up by `slot × stride` (stride: the span of the lab's
/// ports), so that two students' labs never ask for the same port.
pub(crate) fn student_lab_toml(
    class: &Class,
    base: &Lab,
    student: &str,
    placement: &Placement,
) -> Result<String, ClassError> {
    let text = std::fs::read_to_string(&base.file).map_err(|source| ClassError::Io {
        what: "read",
        path: base.file.clone(),
        source,
    })?;
    let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| ClassError::Io {
        what: "parse",
        path: base.file.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let ports = lab_ports(base);
    let lo = u32::from(ports.iter().copied().min().unwrap_or(0));
    let hi = u32::from(ports.iter().copied().max().unwrap_or(0));
    let stride = hi - lo + 1;
    let offset = placement.slot.saturating_mul(stride);
    if hi.saturating_add(offset) > 65535 {
        return Err(ClassError::Ports {
            student: student.to_string(),
            slot: placement.slot,
            stride,
            max: hi.saturating_add(offset),
        });
    }
    let shift = |p: u16| i64::from(u32::from(p) + offset);
    let abs = |p: &str| {
        let joined = base.dir.join(p);
        labctl_driver::files::canonicalize(&joined)
            .unwrap_or(joined)
            .to_string_lossy()
            .into_owned()
    };
    let lab = doc
        .entry("lab")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(lab) = lab {
        lab.insert("name".into(), class.lab_name(student).into());
        if class.workers.is_some() {
            lab.insert(
                "workers".into(),
                toml::Value::Integer(i64::from(base.workers)),
            );
        }
        lab.insert(
            "templates".into(),
            base.templates_dir.to_string_lossy().into_owned().into(),
        );
        let mut trusted = vec![toml::Value::from(abs("."))];
        if let Some(toml::Value::Array(old)) = lab.get("trusted_dirs") {
            trusted.extend(old.iter().filter_map(|v| v.as_str()).map(|s| abs(s).into()));
        }
        lab.insert("trusted_dirs".into(), toml::Value::Array(trusted));
        if let Some(host) = class.host(&placement.host)
            && let HostUri::Libvirt { uri, .. } = &host.uri
        {
            lab.insert("provider".into(), "libvirt".into());
            lab.insert("uri".into(), uri.clone().into());
        }
    }
    if let Some(toml::Value::Table(roles)) = doc.get_mut("role") {
        for (name, role) in roles.iter_mut() {
            let (Some(first), toml::Value::Table(role)) =
                (base.nodes.iter().find(|n| n.role == *name), role)
            else {
                continue;
            };
            role.insert(
                "ssh_port".into(),
                toml::Value::Integer(shift(first.ssh_port)),
            );
            if let Some(toml::Value::Array(fwds)) = role.get_mut("forward") {
                for (f, node_f) in fwds.iter_mut().zip(&first.forwards) {
                    if let toml::Value::Table(f) = f {
                        f.insert("host".into(), toml::Value::Integer(shift(node_f.host)));
                    }
                }
            }
            if let Some(toml::Value::Array(steps)) = role.get_mut("step") {
                for s in steps {
                    if let toml::Value::Table(s) = s
                        && let Some(toml::Value::String(script)) = s.get("script").cloned()
                    {
                        s.insert("script".into(), abs(&script).into());
                    }
                }
            }
        }
    }
    Ok(format!(
        "# Generated by `labctl class` for student `{student}` of class `{}` from {}.\n# Edit that lab, not this file: it is rewritten by every class command.\n{}",
        class.name,
        base.file.display(),
        toml::to_string(&doc).unwrap_or_default()
    ))
}

/// A student's lab, written and loaded.
pub(super) fn student_lab(
    class: &Class,
    paths: &ClassPaths,
    base: &Lab,
    student: &str,
    placement: &Placement,
    opts: &ClassOptions,
) -> Result<Lab, ClassError> {
    let dir = paths.lab_dir(student);
    crate::state::ensure_private_dir(&dir)?;
    let text = student_lab_toml(class, base, student, placement)?;
    let file = dir.join("lab.toml");
    if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
        labctl_driver::boxes::write_atomic(&file, text.as_bytes()).map_err(|source| {
            ClassError::Io {
                what: "write",
                path: file.clone(),
                source,
            }
        })?;
    }
    let mut ov = opts.overrides;
    ov.workers = None;
    let mut lab = labctl_spec::load(&file, ov)?;
    if let Some(a) = opts.accel {
        lab.accel = a;
    }
    Ok(lab)
}

/// Place new students, record the placements, and report the change.
pub(super) fn plan(
    class: &Class,
    paths: &ClassPaths,
    need_mb: u64,
    ops: &dyn LabOps,
    reporter: &dyn ClassReporter,
) -> Result<(ClassState, PlacementPlan), ClassError> {
    let mut st = ClassState::load(paths, class)?;
    let caps = capacities(class, &mut st, ops)?;
    let plan = place(&caps, need_mb, &class.students, &st.placements)?;
    st.placements = plan.placements.clone();
    st.class = class.name.clone();
    st.save(paths)?;
    for s in &plan.placed {
        let p = &plan.placements[s];
        reporter.event(ClassEvent::Placed {
            student: s.clone(),
            host: p.host.clone(),
            slot: p.slot,
        });
    }
    for s in &plan.removed {
        reporter.event(ClassEvent::Removed {
            student: s.clone(),
            host: plan.placements[s].host.clone(),
        });
    }
    Ok((st, plan))
}
