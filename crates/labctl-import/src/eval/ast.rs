//! Shape helpers over the Ruby AST: statement lists, call chains, block arguments, keyword args.

use lib_ruby_parser::Node;

pub(super) fn stmts(node: &Node) -> Vec<&Node> {
    match node {
        Node::Begin(b) => b.statements.iter().collect(),
        Node::KwBegin(b) => b.statements.iter().collect(),
        other => vec![other],
    }
}

pub(super) fn block_arg(args: &Option<Box<Node>>) -> Option<String> {
    let Some(Node::Args(a)) = args.as_deref() else {
        return None;
    };
    match a.args.first()? {
        Node::Arg(x) => Some(x.name.clone()),
        Node::Procarg0(p) => match p.args.first()? {
            Node::Arg(x) => Some(x.name.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// `cfg.vm.network` → ("cfg", ["vm", "network"]).
pub(super) fn chain(node: &Node) -> Option<(String, Vec<String>)> {
    match node {
        Node::Send(s) => {
            let (root, mut path) = chain(s.recv.as_deref()?)?;
            path.push(s.method_name.clone());
            Some((root, path))
        }
        Node::Lvar(v) => Some((v.name.clone(), Vec::new())),
        Node::Const(c) if c.scope.is_none() => Some((c.name.clone(), Vec::new())),
        _ => None,
    }
}

pub(super) fn mentions(node: &Node, pred: &dyn Fn(&Node) -> bool) -> bool {
    if pred(node) {
        return true;
    }
    let mut found = false;
    visit_children(node, &mut |c| {
        if !found && mentions(c, pred) {
            found = true;
        }
    });
    found
}

fn visit_children(node: &Node, f: &mut dyn FnMut(&Node)) {
    match node {
        Node::Begin(b) => b.statements.iter().for_each(f),
        Node::KwBegin(b) => b.statements.iter().for_each(f),
        Node::Block(b) => {
            f(&b.call);
            if let Some(x) = &b.body {
                f(x);
            }
        }
        Node::Send(s) => {
            if let Some(r) = &s.recv {
                f(r);
            }
            s.args.iter().for_each(f);
        }
        Node::If(i) => {
            f(&i.cond);
            if let Some(x) = &i.if_true {
                f(x);
            }
            if let Some(x) = &i.if_false {
                f(x);
            }
        }
        Node::Dstr(d) => d.parts.iter().for_each(f),
        Node::Heredoc(d) => d.parts.iter().for_each(f),
        Node::Array(a) => a.elements.iter().for_each(f),
        Node::Hash(h) => h.pairs.iter().for_each(f),
        Node::Kwargs(h) => h.pairs.iter().for_each(f),
        Node::Pair(p) => {
            f(&p.key);
            f(&p.value);
        }
        Node::Irange(r) => {
            r.left.iter().for_each(|x| f(x));
            r.right.iter().for_each(|x| f(x));
        }
        Node::Erange(r) => {
            r.left.iter().for_each(|x| f(x));
            r.right.iter().for_each(|x| f(x));
        }
        Node::Casgn(c) => c.value.iter().for_each(|x| f(x)),
        Node::Lvasgn(c) => c.value.iter().for_each(|x| f(x)),
        Node::Def(d) => d.body.iter().for_each(|x| f(x)),
        _ => {}
    }
}

pub(super) fn is_configure(call: &Node) -> bool {
    matches!(call, Node::Send(s) if s.method_name == "configure"
        && matches!(s.recv.as_deref(), Some(Node::Const(c)) if c.name == "Vagrant"))
}

pub(super) fn elems_is_single_string(node: &Node) -> bool {
    !matches!(node, Node::Array(_))
}

pub(super) fn kwarg_node<'a>(args: &'a [Node], key: &str) -> Option<&'a Node> {
    for a in args {
        let pairs = match a {
            Node::Kwargs(h) => &h.pairs,
            Node::Hash(h) => &h.pairs,
            _ => continue,
        };
        for p in pairs {
            if let Node::Pair(p) = p {
                let k = match &*p.key {
                    Node::Sym(s) => s.name.to_string_lossy(),
                    Node::Str(s) => s.value.to_string_lossy(),
                    _ => continue,
                };
                if k == key {
                    return Some(&p.value);
                }
            }
        }
    }
    None
}

/// A short description of a construct the evaluator refuses.
pub(super) fn what(node: &Node) -> String {
    let s = match node {
        Node::If(_) | Node::IfMod(_) | Node::IfTernary(_) | Node::Case(_) => "a conditional",
        Node::Index(_) => "an index into a hash or array",
        Node::Block(_) => "a block",
        Node::Ivar(_) | Node::Gvar(_) | Node::Cvar(_) => "an instance or global variable",
        Node::Xstr(_) => "a shell command",
        Node::Regexp(_) => "a regular expression",
        Node::Float(_) => "a floating-point number",
        _ => "Ruby that labctl import does not evaluate",
    };
    format!("{s} (only literals, constants, ranges, loops and string interpolation are evaluated)")
}
