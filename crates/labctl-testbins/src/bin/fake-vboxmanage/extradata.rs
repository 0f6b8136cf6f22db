//! `setextradata` and `getextradata`, per VM and global.

use std::path::PathBuf;

use std::collections::BTreeMap;

use crate::fail::{Res, syntax};
use crate::state::{Fake, read_json, write_json};

impl Fake {
    pub(crate) fn extradata_path(&self) -> PathBuf {
        self.state.join("global-extradata.json")
    }

    pub(crate) fn setextradata(&self, args: &[String]) -> Res {
        let (Some(target), Some(key)) = (args.first(), args.get(1)) else {
            return Err(syntax("Incorrect number of parameters"));
        };
        let value = args.get(2);
        if target == "global" {
            let mut g: BTreeMap<String, String> =
                read_json(&self.extradata_path()).unwrap_or_default();
            match value {
                Some(v) => {
                    g.insert(key.clone(), v.clone());
                }
                None => {
                    g.remove(key);
                }
            }
            write_json(&self.extradata_path(), &g);
            return Ok(());
        }
        let mut vm = self.vm(target)?;
        match value {
            Some(v) => {
                vm.extradata.insert(key.clone(), v.clone());
            }
            None => {
                vm.extradata.remove(key);
            }
        }
        self.save(&vm);
        Ok(())
    }

    pub(crate) fn getextradata(&self, args: &[String]) -> Res {
        let (Some(target), Some(key)) = (args.first(), args.get(1)) else {
            return Err(syntax("Incorrect number of parameters"));
        };
        let data: BTreeMap<String, String> = if target == "global" {
            read_json(&self.extradata_path()).unwrap_or_default()
        } else {
            self.vm(target)?.extradata
        };
        match data.get(key.as_str()).map(String::as_str) {
            Some(v) if !v.is_empty() && self.ru => println!("[ru]Значение: {v}"),
            Some(v) if !v.is_empty() => println!("Value: {v}"),
            _ if self.ru => println!("[ru]Значение не установлено!"),
            _ => println!("No value set!"),
        }
        Ok(())
    }
}
