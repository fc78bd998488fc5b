from dashrl.cli import main

raise SystemExit(main())
