//! Every target runs a few hundred cases without a crash, so the targets keep compiling
//! and working (`make fuzz` runs them for longer).

use causeway_fuzz::{Options, Rng, Target, all_targets, run, run_targets};

#[test]
fn every_target_runs_a_few_hundred_cases() {
    let opts = Options {
        seconds: None,
        max_execs: Some(300),
        crash_dir: None,
        ..Options::default()
    };
    let reports = run(&opts);
    assert_eq!(reports.len(), all_targets().len());
    for r in &reports {
        assert_eq!(r.executions, 300, "{}", r.target);
        assert_eq!(r.crashes, 0, "{}: {:?}", r.target, r.messages);
    }
}

#[test]
fn inputs_are_reproducible_from_the_seed() {
    for t in all_targets() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        for _ in 0..20 {
            assert_eq!(t.generate(&mut a), t.generate(&mut b), "{}", t.name());
        }
    }
}

/// Panics on inputs that start with a zero byte.
struct Boom;

impl Target for Boom {
    fn name(&self) -> &'static str {
        "boom"
    }
    fn generate(&self, rng: &mut Rng) -> Vec<u8> {
        vec![rng.below(4) as u8, 1, 2]
    }
    fn execute(&self, input: &[u8]) -> Option<String> {
        assert_ne!(input.first(), Some(&0), "boom");
        None
    }
}

/// A crash is caught, counted and saved with its message.
#[test]
fn crashes_are_caught_and_saved() {
    let dir = std::env::temp_dir().join(format!("causeway-fuzz-test-{}", std::process::id()));
    let opts = Options {
        seconds: None,
        max_execs: Some(200),
        crash_dir: Some(dir.clone()),
        ..Options::default()
    };
    let targets: Vec<Box<dyn Target>> = vec![Box::new(Boom)];
    let r = run_targets(&targets, &opts);
    assert_eq!(r[0].executions, 200);
    assert!(r[0].crashes > 20, "{:?}", r[0]);
    assert_eq!(
        r[0].messages.len(),
        1,
        "one distinct crash: {:?}",
        r[0].messages
    );
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let input = files
        .iter()
        .find(|f| f.ends_with(".input"))
        .expect("the input is saved");
    assert_eq!(std::fs::read(dir.join(input)).unwrap(), vec![0, 1, 2]);
    assert!(files.iter().any(|f| f.ends_with(".txt")));
    std::fs::remove_dir_all(&dir).unwrap();
}
